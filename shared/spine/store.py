"""The aggregate store: load aggregates, save a batch of them in one write, publish, mark.

:class:`AggregateStore` is what the spine needs of a store; :class:`StoreBase` holds
what every implementation shares, so the MongoDB store and the in-memory one behave
alike (revision conflicts, outboxes published after the write, marks, sweeps, timers).

The guarantee: a change lands with its new state, the id of the message applied and
its outbox in one conditional write; only then are its messages published.  A published
outbox costs no write at all: it stays in the document, stamped by its writer
(:mod:`shared.spine.ledger`), until the next save of that aggregate overwrites it, and
the writer's mark (published through a stamp) is written about once a second, not per
message.  A load treats an outbox its writer's mark covers as sent.  A crash between the
write and the publish (or before the mark) leaves outboxes beyond the mark: the sweep of
any writer publishes them again; consumers drop repeats by event id
(docs/decisions/0016-outbox-watermarks.md, :mod:`shared.spine.marks`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from contracts import Envelope
from shared.outgoing import Outgoing, opened_outbox, outgoing_all
from shared.spine.aggregate import Aggregate, Conflict, aggregate_of, aware, document_of
from shared.spine.ledger import Ledger
from shared.spine.marks import Backlog, Document, MarkStorage, OutboxMarks, utc_now

Due = tuple[str, datetime, tuple[Mapping[str, Any], ...]]  # key, next_timer_at, timers


class AggregateStore(Protocol):
    async def load(self, keys: Iterable[str]) -> dict[str, Aggregate]: ...

    async def load_where(self, query: Mapping[str, Any]) -> dict[str, Aggregate]: ...

    async def save(self, changes: Sequence[Aggregate]) -> None: ...

    async def publish(self, envelopes: Sequence[Envelope]) -> None: ...

    async def due(self, until: datetime, limit: int) -> list[Due]: ...

    async def claim(self, due: Sequence[Due], until: datetime) -> list[str]: ...

    def on_timer(self, listener: Callable[[datetime], None]) -> None: ...


class StoreBase:
    """Save and load around primitives each store implements; the outboxes' stamps, marks
    and sweep are :class:`~shared.spine.marks.OutboxMarks` on the store's ``marks``."""

    def __init__(self, marks: MarkStorage, *, key_field: str | None = None,
                 mark_delay: float = 1.0, clock: Callable[[], datetime] = utc_now,
                 backlog: Backlog | None = None) -> None:
        self.key_field = key_field  # where a stamped document's stamp key goes (decision 37)
        self.outboxes = OutboxMarks(marks, self.publish_outboxes, mark_delay=mark_delay,
                                    clock=clock, backlog=backlog)
        self.clock = clock
        self._timer_listeners: list[Callable[[datetime], None]] = []

    # -- what each store implements ------------------------------------------------------
    async def _find(self, query: Mapping[str, Any]) -> list[Document]:
        """The documents matching ``query`` (``_id``/fields by equality or ``$in``): one read."""
        raise NotImplementedError

    async def _write(self, docs: Sequence[tuple[int, Document]]) -> set[str]:
        """Write each (revision read, document) conditionally, in one write; the keys lost."""
        raise NotImplementedError

    async def _send(self, messages: Sequence[Outgoing]) -> None:
        """Send messages as they are (encoded once, :mod:`shared.outgoing`)."""
        raise NotImplementedError

    # -- the spine's side ------------------------------------------------------------------
    async def load(self, keys: Iterable[str]) -> dict[str, Aggregate]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        return await self._aggregates(await self._find({"_id": {"$in": wanted}}))

    async def load_where(self, query: Mapping[str, Any]) -> dict[str, Aggregate]:
        return await self._aggregates(await self._find(query))

    async def save(self, changes: Sequence[Aggregate]) -> None:
        """Write the changed aggregates in one write, then publish their outboxes.

        Raises :class:`Conflict` naming the keys whose revision moved; the others landed
        and their messages went out.
        """
        changed = [a for a in changes if a.changed]
        if not changed:
            return
        stamp = await self.outboxes.stamp() if any(a.outbox for a in changed) else None
        published = False
        try:
            docs = {a.key: document_of(a, stamp, self.outboxes.writer, self.key_field)
                    for a in changed}
            lost = await self._write([(a.revision, docs[a.key]) for a in changed])
            landed = [docs[a.key] for a in changed if a.key not in lost]
            outboxes = [m for a in changed if a.key not in lost for m in a.outbox]
            if outboxes:
                await self._send(outboxes)
            published = True
        finally:
            if stamp is not None:
                self.outboxes.settle(stamp, published)
        soonest = min((aware(d["next_timer_at"]) for d in landed if "next_timer_at" in d),
                      default=None)
        if soonest is not None:
            for listener in self._timer_listeners:
                listener(soonest)
        if lost:
            raise Conflict(sorted(lost))

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        if envelopes:
            await self._send(outgoing_all(envelopes))

    async def publish_outboxes(self, docs: Iterable[Mapping[str, Any]]) -> int:
        """Publish the outboxes of these documents as stored; how many messages went out."""
        messages = [m for d in docs for m in opened_outbox(d.get("outbox"))]
        if messages:
            await self._send(messages)
        return len(messages)

    def on_timer(self, listener: Callable[[datetime], None]) -> None:
        """Call ``listener`` with the soonest timer of each save (to wake a timer loop)."""
        self._timer_listeners.append(listener)

    async def _aggregates(self, docs: list[Document]) -> dict[str, Aggregate]:
        await self.outboxes.before_load(docs)
        return {d["_id"]: aggregate_of(self.outboxes.forget_published(d, in_flight=False))
                for d in docs}

    # -- the outboxes' marks and sweep (shared.spine.marks), as the services call them -----
    @property
    def ledger(self) -> Ledger:
        return self.outboxes.ledger

    def forget_published(self, doc: Document, *, in_flight: bool = True) -> Document:
        return self.outboxes.forget_published(doc, in_flight=in_flight)

    async def mark_when_published(self) -> bool:
        return await self.outboxes.mark_when_published()

    async def write_mark(self, *, again: bool = False) -> bool:
        return await self.outboxes.write_mark(again=again)

    async def sweep(self, older_than: timedelta = timedelta(seconds=5)) -> int:
        return await self.outboxes.sweep(older_than)
