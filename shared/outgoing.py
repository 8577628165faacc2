"""A message as the producer sends it, encoded once, and an outbox kept in that form.

An envelope to publish becomes an :class:`Outgoing` when it is built: its topic, its key,
its value (the JSON bytes a consumer parses) and its headers.  The outbox stores these as
they are, packed in one BSON value for the whole outbox, and the publisher sends them as
they are (:meth:`shared.messaging.Publisher.send`).  Before (decision 35) a message was
dumped to a dict for the outbox, that dict packed for the document, and the envelope
encoded to JSON again to publish: three serializations of the same message, and a read
back outbox was parsed and validated again before it went out.

Documents written before hold their outbox as a list, one value a message: the envelope
packed (decision 27) or, older still, as a subdocument.  :func:`opened_outbox` reads all
three; the envelopes of the old forms are parsed and encoded as they were published then.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import bson

from contracts import Envelope, encode, header_pairs, parse_dict
from shared.packed import CODEC, opened

# The outbox's packed value: {RECORDS: [{topic, key, value, headers}, ...]}.
RECORDS = "records"


class Outgoing(NamedTuple):
    """What the producer sends for one message; ``headers`` in the order Kafka gets them.

    A named tuple: built for every message, it costs a quarter of a frozen dataclass."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    def stored(self) -> dict[str, Any]:
        """As the outbox's packed value holds it (the headers a subdocument, in order)."""
        return {"topic": self.topic, "key": self.key, "value": self.value,
                "headers": dict(self.headers)}

    @property
    def type(self) -> str:
        """The message type, from its header (for logs and tests; nothing parses the value)."""
        return dict(self.headers).get("type", b"").decode()


def outgoing(envelope: Envelope) -> Outgoing:
    """``envelope`` encoded once, as the producer sends it."""
    return Outgoing(envelope.payload.TOPIC, envelope.partition_key.encode(), encode(envelope),
                    header_pairs(envelope))


def outgoing_all(envelopes: Iterable[Envelope]) -> list[Outgoing]:
    return [outgoing(envelope) for envelope in envelopes]


def from_stored(value: Mapping[str, Any]) -> Outgoing:
    """A message as the outbox's packed value (or a packed dispatch) holds it; an envelope
    as an earlier version stored it (a dict of the envelope) is parsed and encoded."""
    if "value" in value and "topic" in value:
        return Outgoing(value["topic"], value["key"], value["value"],
                        tuple(value["headers"].items()))
    return outgoing(parse_dict(dict(value)))


def packed_outbox(messages: Sequence[Outgoing]) -> bytes | list[Any]:
    """The outbox as a document stores it: one packed value, or an empty list for none (so
    that ``not doc["outbox"]`` still says there is nothing to send)."""
    if not messages:
        return []
    return bson.encode({RECORDS: [m.stored() for m in messages]})


def opened_outbox(value: bytes | Iterable[bytes | Mapping[str, Any]] | None) -> list[Outgoing]:
    """A stored outbox: one packed value (this version), or a list of envelopes, packed or
    as subdocuments (documents written before)."""
    if not value:
        return []
    if isinstance(value, bytes):
        return [from_stored(m) for m in bson.decode(value, codec_options=CODEC)[RECORDS]]
    return [from_stored(opened(m)) for m in value]
