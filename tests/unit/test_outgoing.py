"""An outbox kept as the producer sends it (decision 35): encoded once, stored as one packed
value, read back as the same bytes, and read from the lists earlier versions wrote."""

from __future__ import annotations

import bson
import pytest

from contracts import Envelope, encode, headers_of, new_event, parse
from contracts.events.steps import StepRequested
from contracts.events.workitems import WorkItemCancelRequested
from shared.outgoing import Outgoing, from_stored, opened_outbox, outgoing, packed_outbox
from shared.packed import items_of, opened_all, packed, packed_list


def messages() -> list[Envelope]:
    return [new_event(WorkItemCancelRequested(step="s", reason="é r"), producer="test",
                      run_id="run-1"),
            new_event(StepRequested(orchestration="o", version=1, stage="one", step="prepare",
                                    attempt=2, action="noop",
                                    idempotency_key="run-1:prepare:2",
                                    operation_key="run-1:prepare"),
                      producer="test", run_id="run-1")]


def test_a_message_is_what_the_publisher_sent_for_its_envelope() -> None:
    for envelope in messages():
        message = outgoing(envelope)
        assert message.topic == envelope.payload.TOPIC
        assert message.key == envelope.partition_key.encode()
        assert message.value == encode(envelope)
        assert {name: value.decode() for name, value in message.headers} == headers_of(envelope)
        assert message.type == envelope.type
        assert parse(message.value) == envelope


def test_an_outbox_is_one_packed_value_read_back_as_the_same_messages() -> None:
    sent = [outgoing(e) for e in messages()]
    stored = packed_outbox(sent)
    assert isinstance(stored, bytes)
    assert opened_outbox(stored) == sent
    assert packed_outbox([]) == [] and opened_outbox([]) == [] and opened_outbox(None) == []


@pytest.mark.parametrize("packed_each", [True, False])
def test_an_outbox_an_earlier_version_wrote_is_read_as_it_would_have_been_sent(
        packed_each: bool) -> None:
    """A list of envelopes, each packed (decision 27) or a subdocument: parsed, encoded."""
    envelopes = messages()
    dumped = [e.model_dump(mode="json") for e in envelopes]
    stored = [packed(m) for m in dumped] if packed_each else dumped
    assert opened_outbox(stored) == [outgoing(e) for e in envelopes]
    assert from_stored(dumped[1]) == outgoing(envelopes[1])


def test_a_message_stored_keeps_its_headers_in_order() -> None:
    message = Outgoing("t", b"k", b"{}", (("b", b"2"), ("a", b"1")))
    assert from_stored(bson.decode(bson.encode(message.stored()))) == message


def test_a_packed_list_is_one_value_and_lists_written_before_read_the_same() -> None:
    entries = [{"revision": 1, "x": "a"}, {"revision": 2, "x": "b"}]
    each = [packed(e) for e in entries]
    one = packed_list(each)
    assert items_of(one) == each  # the same bytes, for a page to take as they are
    assert opened_all(one) == opened_all(each) == opened_all(entries) == entries
    assert items_of(None) == [] and opened_all([]) == []
