"""A holder event says whom it gives the work item to in a ``holders`` header (decision 40):
what the coordinator would record of it, so that it can pass one over unparsed."""

from __future__ import annotations

from typing import Any

import pytest

from contracts import encode, header_pairs, headers_of, new_event, parse
from contracts.events import workitems as wi
from contracts.registry import HOLDERS, holders_in, holders_value
from services.stage_coordinator.core.participants import HOLDER_EVENTS, of_work_item_event
from shared.outgoing import outgoing

ASSIGNEES = [("user", "alice"), ("group", "legal"), ("queue", "hr"), ("user", ""),
             ("record_field", "record.owner"), ("manager_of", "record.owner"), ("", ""),
             ("user", "zoë ünïcode")]


def holder_events() -> list[wi.WorkItemEvent]:
    events: list[wi.WorkItemEvent] = []
    for cls in HOLDER_EVENTS:
        for kind, who in ASSIGNEES:
            extra: list[dict[str, Any]] = [{}]
            if cls is wi.WorkItemDelegated:
                extra = [{"delegate": d} for d in ("dev", "", "system", "alice")]
            for more in extra:
                events.append(cls(work_item_id="w1", step="legal", assignee_kind=kind,
                                  assignee=who, **more))
    return events


@pytest.mark.parametrize("event", holder_events(), ids=repr)
def test_the_header_names_what_the_coordinator_records_of_the_event(
        event: wi.WorkItemEvent) -> None:
    envelope = new_event(event, producer="assignment", run_id="r1")
    headers = dict(header_pairs(envelope))
    # As the consumer reads it from the wire, against what it records of the parsed event.
    assert holders_in(headers[HOLDERS]) == of_work_item_event(parse(encode(envelope)).payload)
    assert dict(outgoing(envelope).headers)[HOLDERS] == headers[HOLDERS]


def test_each_holder_event_type_and_a_delegation_give_their_keys() -> None:
    def value(event: wi.WorkItemEvent) -> bytes | None:
        return dict(header_pairs(new_event(event, producer="a", run_id="r1"))).get(HOLDERS)

    assert {cls.TYPE for cls in HOLDER_EVENTS} == {
        "WorkItemAssigned", "WorkItemReassigned", "WorkItemDelegated", "WorkItemEscalated"}
    for cls in HOLDER_EVENTS:
        assert value(cls(work_item_id="w", step="s", assignee_kind="group",
                         assignee="legal")) == b"group:legal"
    assert value(wi.WorkItemDelegated(work_item_id="w", step="s", assignee_kind="user",
                                      assignee="maya", delegate="dev")) == b"user:maya,user:dev"
    assert value(wi.WorkItemAssigned(work_item_id="w", step="s", assignee_kind="record_field",
                                     assignee="record.x")) == b""


def test_other_messages_carry_no_holders_header() -> None:
    for event in (wi.WorkItemCompleted(work_item_id="w", step="s", assignee_kind="user",
                                       assignee="alice"),
                  wi.WorkItemClaimed(work_item_id="w", step="s", assignee_kind="user",
                                     assignee="alice")):
        envelope = new_event(event, producer="a", run_id="r1")
        assert [name for name, _ in header_pairs(envelope)] == [
            "type", "schema_version", "correlation_id"]
        assert HOLDERS not in headers_of(envelope)


def test_a_key_that_would_read_as_two_has_no_header_so_the_message_is_parsed() -> None:
    comma = wi.WorkItemAssigned(work_item_id="w", step="s", assignee_kind="user",
                                assignee="a,user:b")
    assert holders_value(comma) is None
    assert HOLDERS not in dict(header_pairs(new_event(comma, producer="a", run_id="r1")))
    surrogate = wi.WorkItemAssigned(work_item_id="w", step="s", assignee_kind="user",
                                    assignee="\ud800")
    assert holders_value(surrogate) is None


def test_a_header_that_is_not_utf8_or_missing_is_not_read() -> None:
    assert holders_in(None) is None
    assert holders_in(b"user:\xff") is None
    assert holders_in(b"") == []
    assert holders_in(b"user:a,group:b") == ["user:a", "group:b"]
