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
(docs/decisions/0016-outbox-watermarks.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from contracts import Envelope, parse_dict
from shared.spine.aggregate import Aggregate, Conflict, aggregate_of, aware, document_of
from shared.spine.ledger import Ledger

log = logging.getLogger("baton.spine")
Document = dict[str, Any]
Due = tuple[str, datetime, tuple[Mapping[str, Any], ...]]  # key, next_timer_at, timers
Marks = dict[str, Mapping[str, Any]]  # writer -> {"through": stamp, "at": when written}
# A writer writes its mark again before a save when its last one is older than this, so
# a writer whose mark is older than this (plus LATE_WRITES) has stamped nothing since.
REFRESH = timedelta(seconds=30)
# How late a write may land after its stamp: the sweep moves another writer's mark on
# only this far behind what it looked at, and reads that stretch again next time.
LATE_WRITES = timedelta(seconds=60)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


class AggregateStore(Protocol):
    async def load(self, keys: Iterable[str]) -> dict[str, Aggregate]: ...

    async def load_where(self, query: Mapping[str, Any]) -> dict[str, Aggregate]: ...

    async def save(self, changes: Sequence[Aggregate]) -> None: ...

    async def publish(self, envelopes: Sequence[Envelope]) -> None: ...

    async def due(self, until: datetime, limit: int) -> list[Due]: ...

    async def claim(self, due: Sequence[Due], until: datetime) -> list[str]: ...

    def on_timer(self, listener: Callable[[datetime], None]) -> None: ...


class StoreBase:
    """Save, load, mark and sweep around primitives each store implements."""

    def __init__(self, *, mark_delay: float = 1.0,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.ledger = Ledger(clock)
        self.clock = clock
        self.mark_delay = mark_delay
        self.marks: dict[str, datetime] = {}  # other writers' marks as last read
        self.swept_last = 0  # documents the last sweep published again
        self._marked: datetime | None = None  # the mark as last written
        self._marked_at = -float("inf")  # when (monotonic), for REFRESH
        self._marking = asyncio.Lock()
        self._resent: dict[tuple[str, int], tuple[str, datetime]] = {}
        self._timer_listeners: list[Callable[[datetime], None]] = []

    # -- what each store implements ------------------------------------------------------
    async def _find(self, query: Mapping[str, Any]) -> list[Document]:
        """The documents matching ``query`` (``_id``/fields by equality or ``$in``): one read."""
        raise NotImplementedError

    async def _write(self, docs: Sequence[tuple[int, Document]]) -> set[str]:
        """Write each (revision read, document) conditionally, in one write; the keys lost."""
        raise NotImplementedError

    async def _send(self, envelopes: Sequence[Envelope]) -> None:
        raise NotImplementedError

    async def _read_marks(self) -> Marks:
        """Every writer's mark (one read)."""
        raise NotImplementedError

    async def _write_mark(self, writer: str, through: datetime, at: datetime | None) -> None:
        """Raise ``writer``'s mark to ``through`` (never lower it); ``at``: when, if the
        writer writes its own (a sweep moving another's on leaves that as it was)."""
        raise NotImplementedError

    async def _retire(self, writer: str, at: datetime | None) -> None:
        """Drop ``writer``'s mark if it was last written at ``at`` (a writer long gone)."""
        raise NotImplementedError

    async def _stamped(self, writer: str, after: datetime, until: datetime) -> list[Document]:
        """Documents whose outbox ``writer`` stamped in (after, until]: one read."""
        raise NotImplementedError

    async def _stamped_at(self, writer: str, stamps: Sequence[datetime]) -> list[Document]:
        """Documents whose outbox ``writer`` stamped with one of ``stamps``: one read."""
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
        stamp = None
        if any(a.outbox for a in changed):
            await self._refresh_mark()
            stamp = self.ledger.stamp()
        published = False
        try:
            docs = {a.key: document_of(a, stamp, self.ledger.writer) for a in changed}
            lost = await self._write([(a.revision, docs[a.key]) for a in changed])
            landed = [docs[a.key] for a in changed if a.key not in lost]
            await self.publish_outboxes(landed)
            published = True
        finally:
            if stamp is not None:
                self.ledger.settle(stamp, published)
        soonest = min((aware(d["next_timer_at"]) for d in landed if "next_timer_at" in d),
                      default=None)
        if soonest is not None:
            for listener in self._timer_listeners:
                listener(soonest)
        if lost:
            raise Conflict(sorted(lost))

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        if envelopes:
            await self._send(envelopes)

    async def publish_outboxes(self, docs: Iterable[Mapping[str, Any]]) -> int:
        """Publish the outboxes of these documents; how many messages went out."""
        messages = [m for d in docs for m in d.get("outbox") or ()]
        if messages:
            await self._send([parse_dict(dict(m)) for m in messages])
        return len(messages)

    def on_timer(self, listener: Callable[[datetime], None]) -> None:
        """Call ``listener`` with the soonest timer of each save (to wake a timer loop)."""
        self._timer_listeners.append(listener)

    # -- what a read takes as sent ---------------------------------------------------------
    def is_published(self, doc: Mapping[str, Any], *, in_flight: bool = True) -> bool | None:
        """Whether ``doc``'s outbox went out: its writer's mark covers it (None: a writer
        this store has not read a mark of yet)."""
        writer, stamp = doc.get("outbox_by"), doc.get("outbox_at")
        if not doc.get("outbox"):
            return True
        if writer is None or stamp is None:
            return False  # written before marks: the sweep or the next save sends it
        if writer == self.ledger.writer:
            return self.ledger.published(aware(stamp), in_flight=in_flight)
        mark = self.marks.get(writer)
        return None if mark is None else aware(stamp) <= mark

    def forget_published(self, doc: Document, *, in_flight: bool = True) -> Document:
        """Drop from a document just read an outbox that went out (for reads that only show
        the item; a save's load waits for this writer's saves in flight first)."""
        if self.is_published(doc, in_flight=in_flight):
            doc["outbox"] = []
            doc.pop("outbox_at", None)
            doc.pop("outbox_by", None)
        return doc

    async def _aggregates(self, docs: list[Document]) -> dict[str, Aggregate]:
        """Aggregates to decide on and save.  An outbox this writer is still publishing is
        waited for: carried along it would go out twice, dropped it could be lost."""
        mine = [aware(d["outbox_at"]) for d in docs
                if d.get("outbox") and d.get("outbox_by") == self.ledger.writer]
        await self.ledger.settled(mine)
        unheard = {d["outbox_by"] for d in docs if self.is_published(d) is None}
        if unheard:
            await self._learn_marks(unheard)
        return {d["_id"]: aggregate_of(self.forget_published(d, in_flight=False))
                for d in docs}

    async def _learn_marks(self, seen: Iterable[str] = ()) -> Marks:
        """Read every writer's mark.  A writer seen without one has none any more (it
        marks before its first save and is retired only once silent for long, all its
        outboxes sent): what it stamped before this read is covered."""
        read_at = self.clock()
        marks = await self._read_marks()
        known = {w: aware(m["through"]) for w, m in marks.items() if m.get("through")}
        for writer in {*self.marks, *seen} - known.keys():
            known[writer] = read_at - REFRESH
        self.marks = known
        return marks

    # -- the mark ----------------------------------------------------------------------------
    async def mark_when_published(self) -> bool:
        """A job: sleeps until a save settled, then writes the mark (about once a second)."""
        await self.ledger.moved.wait()
        self.ledger.moved.clear()
        await asyncio.sleep(self.mark_delay)  # the saves of a burst share one mark write
        return await self.write_mark()

    async def write_mark(self, *, again: bool = False) -> bool:
        """Write this writer's mark if it moved (or ``again``: to say it is still here)."""
        async with self._marking:
            if self.ledger.through == self._marked and not again:
                return False
            await self._mark_now()
            return True

    async def _refresh_mark(self) -> None:
        """Before stamping: a mark written within REFRESH, so no sweep retires this writer."""
        async with self._marking:  # concurrent first saves: one of them writes it
            if time.monotonic() - self._marked_at >= REFRESH.total_seconds() / 2:
                await self._mark_now()

    async def _mark_now(self) -> None:
        through, started = self.ledger.through, time.monotonic()
        await self._write_mark(self.ledger.writer, through, self.clock())
        self._marked, self._marked_at = through, started

    # -- the sweep ---------------------------------------------------------------------------
    async def sweep(self, older_than: timedelta = timedelta(seconds=5)) -> int:
        """Publish what a crash (or a failed save) left beyond the marks; how many documents.

        This writer's own outboxes in flight are never sent again by it; another writer's
        beyond its mark and older than ``older_than`` are (a live but slow one sends them
        too: a rare duplicate).  A writer long silent with nothing left is retired.
        """
        cutoff = self.clock() - older_than
        swept = await self._sweep_own(cutoff)
        marks = await self._learn_marks()
        for writer, mark in marks.items():
            if writer != self.ledger.writer:
                swept += await self._sweep_writer(writer, mark, cutoff)
        self.swept_last = swept
        if swept:
            log.warning("published again the outboxes of %d documents left by a crash", swept)
        return swept

    async def _sweep_own(self, cutoff: datetime) -> int:
        doubtful = sorted(s for s in self.ledger.in_doubt if s <= cutoff)
        if not doubtful:
            return 0
        docs = await self._stamped_at(self.ledger.writer, doubtful)
        await self.publish_outboxes(docs)
        self.ledger.recovered(doubtful)
        return len(docs)

    async def _sweep_writer(self, writer: str, mark: Mapping[str, Any],
                            cutoff: datetime) -> int:
        through = aware(mark.get("through") or EPOCH)
        marked_at = aware(mark["at"]) if mark.get("at") else None
        sent = 0
        if through < cutoff:
            docs = await self._stamped(writer, through, cutoff)
            fresh = [d for d in docs if (d["_id"], d["revision"]) not in self._resent]
            await self.publish_outboxes(fresh)
            self._resent.update({(d["_id"], d["revision"]): (writer, aware(d["outbox_at"]))
                                 for d in fresh})
            sent = len(fresh)
            moved = cutoff - LATE_WRITES
            if moved > through:
                await self._write_mark(writer, moved, None)
                through = moved
        self._resent = {k: v for k, v in self._resent.items()
                        if v[0] != writer or v[1] > through}
        # Its stamps are all within REFRESH of its last mark (it marks again before a save
        # otherwise): once the mark covers that, nothing of it is left to send.
        if through >= (marked_at or EPOCH) + REFRESH:
            await self._retire(writer, marked_at)
        return sent
