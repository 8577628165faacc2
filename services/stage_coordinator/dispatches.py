"""A step's dispatch as a run keeps it: the message that asked for the step's current
attempt, as sent, so that the reconcile can send it again while the step waits for its
outcome (``active_steps[].dispatch`` in a run's document, written by every save while the
step is active; decision 35)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from contracts import Envelope
from shared.outgoing import Outgoing, from_stored
from shared.packed import opened, packed

DISPATCHES = ("StepRequested", "WorkItemRequested")


@dataclass(frozen=True)
class Dispatch:
    """A step's last dispatch as sent, packed once with its attempt (as ``active_steps``
    keeps it, written again by every save while the step is active)."""

    attempt: int
    packed: bytes

    @classmethod
    def of(cls, attempt: int, message: Outgoing) -> Dispatch:
        return cls(attempt, packed({"attempt": attempt, **message.stored()}))

    @classmethod
    def read(cls, value: bytes | dict[str, Any]) -> Dispatch:
        """As a document holds it: this version's, or an earlier one's envelope (packed,
        or a subdocument)."""
        doc = opened(value)
        if "attempt" in doc:
            return cls(doc["attempt"], value if isinstance(value, bytes) else packed(doc))
        return cls.of(doc["payload"]["attempt"], from_stored(doc))


def dispatches_of(sending: Sequence[Envelope], outbox: Sequence[Outgoing]) -> dict[str, Dispatch]:
    """The dispatches among messages built (``sending``) and encoded (``outbox``), by step."""
    return {e.payload.step: Dispatch.of(e.payload.attempt, m)  # type: ignore[attr-defined]
            for e, m in zip(sending, outbox, strict=True) if e.type in DISPATCHES}


def dispatched(value: bytes | dict[str, Any]) -> Outgoing:
    """The message of a stored dispatch, to send again (either form, :meth:`Dispatch.read`)."""
    return from_stored(opened(value))
