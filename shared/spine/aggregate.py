"""An aggregate as the spine keeps it, what a decision returns, and how both become a document.

An aggregate is one document: the service's own fields (``state``) beside the spine's
shell fields: ``revision`` (every write is conditional on the one read), ``applied``
(the ids of the messages already applied: the inbox), ``outbox`` (messages written with
the change, published after it: encoded once, as the producer sends them, and packed in one
value, :mod:`shared.outgoing`), ``outbox_at``/``outbox_by`` (the stamp and the writer of
the outbox, see :mod:`shared.spine.ledger`; the store may write the stamp's key into a
multikey field of the service's too, :mod:`shared.spine.stamp_keys`), ``timers`` (pending
timers, each a dict with at least a ``due_at``) and ``next_timer_at`` (the soonest,
indexed by the store).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from contracts import Envelope
from shared.outgoing import Outgoing, opened_outbox, outgoing, packed_outbox
from shared.spine.stamp_keys import with_stamp_key

SHELL_FIELDS = ("_id", "revision", "applied", "outbox", "outbox_at", "outbox_by", "timers",
                "next_timer_at", "timer_lease")
APPLIED_KEPT = 200  # the newest message ids an aggregate remembers (its inbox)


class Conflict(Exception):
    """Another writer changed these aggregates first: read them again and decide again."""

    def __init__(self, keys: Sequence[str], message: str = "") -> None:
        self.keys = tuple(keys)
        super().__init__(message or f"{len(self.keys)} aggregates changed since read: "
                                    f"{', '.join(self.keys[:5])}")


@dataclass(frozen=True)
class Decided:
    """What a service decided about one aggregate for one message or command.

    ``state`` None leaves the service's fields as they are; ``timers`` None leaves the
    pending timers.  ``reply`` goes back to the caller of ``act``; ``answers`` are sent
    after the save without being stored (e.g. an outcome repeated for a redelivery).
    ``publish`` may hold messages encoded already (:class:`~shared.outgoing.Outgoing`, by a
    service that checked their bytes): they go into the outbox as they are.
    """

    state: Mapping[str, Any] | None = None
    publish: Sequence[Envelope | Outgoing] = ()
    timers: Sequence[Mapping[str, Any]] | None = None
    reply: Any = None
    answers: Sequence[Envelope] = ()

    @property
    def changes(self) -> bool:
        return self.state is not None or bool(self.publish) or self.timers is not None


@dataclass(frozen=True)
class TimerDue:
    """The command a due timer becomes; ``context`` is what the service asked for to fire."""

    timer: Mapping[str, Any]
    context: Any = None


@dataclass(frozen=True)
class Aggregate:
    key: str
    state: Mapping[str, Any] | None = None  # None: nothing stored under this key yet
    revision: int = 0  # the revision read (0: new); the save is conditional on it
    applied: tuple[str, ...] = ()
    outbox: tuple[Outgoing, ...] = ()  # unpublished messages, as the producer sends them
    timers: tuple[Mapping[str, Any], ...] = ()
    changed: bool = False
    answers: tuple[Envelope, ...] = field(default=(), compare=False)
    # Given from what this process saved (shared/spine/written.py), not read: perhaps stale.
    cached: bool = field(default=False, compare=False)

    def after(self, decided: Decided, message_id: str | None = None) -> Aggregate:
        """This aggregate once ``decided`` is applied (still under the revision read)."""
        # Built directly, not with dataclasses.replace: this runs for every message and
        # command, and replace() costs three times the constructor.
        answers = (*self.answers, *decided.answers) if decided.answers else self.answers
        if not decided.changes:
            return self if answers is self.answers else self.with_answers(answers)
        applied = self.applied
        if message_id is not None and message_id not in applied:
            applied = (*applied, message_id)[-APPLIED_KEPT:]
        return Aggregate(
            self.key,
            dict(decided.state) if decided.state is not None else self.state,
            self.revision,
            applied,
            (*self.outbox, *encoded(decided.publish)),
            self.timers if decided.timers is None else tuple(decided.timers),
            True,
            answers,
            self.cached,
        )

    def with_answers(self, answers: tuple[Envelope, ...]) -> Aggregate:
        return Aggregate(self.key, self.state, self.revision, self.applied, self.outbox,
                         self.timers, self.changed, answers, self.cached)

    def without_timer(self, timer: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...] | None:
        """The pending timers once ``timer`` is gone; None if it is not pending (stale)."""
        key = timer_key(timer)
        rest = tuple(t for t in self.timers if timer_key(t) != key)
        return None if len(rest) == len(self.timers) else rest


def encoded(messages: Sequence[Envelope | Outgoing]) -> list[Outgoing]:
    """Each message as the producer sends it (encoded now, unless it was already)."""
    return [m if isinstance(m, Outgoing) else outgoing(m) for m in messages]


def aggregate_of(doc: Mapping[str, Any], *, cached: bool = False) -> Aggregate:
    return Aggregate(
        key=doc["_id"],
        state={k: v for k, v in doc.items() if k not in SHELL_FIELDS},
        revision=int(doc.get("revision") or 0),
        applied=tuple(doc.get("applied") or ()),
        outbox=tuple(opened_outbox(doc.get("outbox"))),  # packed, or as written before
        timers=tuple(doc.get("timers") or ()),
        cached=cached,
    )


def document_of(aggregate: Aggregate, stamp: datetime | None,
                writer: str | None = None, key_field: str | None = None) -> dict[str, Any]:
    """The document to write for a changed aggregate, at the next revision; its outbox
    (if any) stamped ``stamp`` by ``writer``, and that stamp's key in the multikey
    ``key_field`` (in place of the key of the stamp the state was read with)."""
    doc: dict[str, Any] = {**(aggregate.state or {}), "_id": aggregate.key,
                           "revision": aggregate.revision + 1,
                           "applied": list(aggregate.applied),
                           "outbox": packed_outbox(aggregate.outbox)}
    stamped = bool(aggregate.outbox)
    if stamped:
        doc["outbox_at"] = stamp
        if writer is not None:
            doc["outbox_by"] = writer
    if key_field is not None:
        doc[key_field] = with_stamp_key(doc.get(key_field), writer if stamped else None,
                                        stamp)
    timers = sorted(aggregate.timers, key=lambda t: aware(t["due_at"]))
    doc["timers"] = [dict(t) for t in timers]
    if timers:
        doc["next_timer_at"] = timers[0]["due_at"]
    return doc


def timer_key(timer: Mapping[str, Any]) -> tuple[Any, ...]:
    """What identifies a stored timer: every field, the time compared in UTC."""
    return tuple(sorted((k, aware(v).isoformat() if isinstance(v, datetime) else repr(v))
                        for k, v in timer.items()))


def aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
