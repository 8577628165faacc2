"""A writer's outboxes: stamped per save, marked as published about once a second, swept.

One implementation for every store whose documents carry their own outbox: the spine's
stores (:mod:`shared.spine.store`) and the coordinator's run store.  A save that leaves
work to do after its write (an outbox to publish; the coordinator also pages the history
saved with the run) takes a stamp of this writer's :class:`~shared.spine.ledger.Ledger`
and settles it once that work is done (or failed).  Nothing is cleared per document: the
next save of the document overwrites it, and this writer's mark ("published through T"),
written about once a second, tells every reader and every sweep that the rest went out
(docs/decisions/0016-outbox-watermarks.md).

What differs per store is where the marks and the stamped documents are kept
(:class:`MarkStorage`) and what sending a swept document again means (``resend``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from shared.due import Alarm
from shared.spine.aggregate import aware
from shared.spine.ledger import Ledger

log = logging.getLogger("baton.spine")
Document = dict[str, Any]
Marks = dict[str, Mapping[str, Any]]  # writer -> {"through": stamp, "at": when written}
Resend = Callable[[Sequence[Document]], Awaitable[int]]  # publish what a sweep found
# A writer writes its mark again before a save when its last one is older than this, so
# a writer whose mark is older than this (plus LATE_WRITES) has stamped nothing since.
REFRESH = timedelta(seconds=30)
# How late a write may land after its stamp: the sweep moves another writer's mark on
# only this far behind what it looked at, and reads that stretch again next time.
LATE_WRITES = timedelta(seconds=60)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


class MarkStorage(Protocol):
    """Where the writers' marks live, and the reads of the documents they stamped."""

    async def read_marks(self) -> Marks:
        """Every writer's mark (one read)."""

    async def write_mark(self, writer: str, through: datetime, at: datetime | None) -> None:
        """Raise ``writer``'s mark to ``through`` (never lower it); ``at``: when, if the
        writer writes its own (a sweep moving another's on leaves that as it was)."""

    async def retire(self, writer: str, at: datetime | None) -> None:
        """Drop ``writer``'s mark if it was last written at ``at`` (a writer long gone)."""

    async def stamped(self, writer: str, after: datetime, until: datetime) -> list[Document]:
        """Documents ``writer`` stamped in (after, until]: one read."""

    async def stamped_at(self, writer: str, stamps: Sequence[datetime]) -> list[Document]:
        """Documents ``writer`` stamped with one of ``stamps``: one read."""

    async def sweep_unmarked(self, cutoff: datetime, resend: Resend) -> int:
        """Once per collection: resend what was stored before writers stamped (how many)."""


class Backlog(Protocol):
    def set(self, value: float) -> None: ...


class OutboxMarks:
    """Stamp, settle, read as sent, mark and sweep, around a :class:`MarkStorage`."""

    def __init__(self, storage: MarkStorage, resend: Resend, *, mark_delay: float = 1.0,
                 clock: Callable[[], datetime] = utc_now, backlog: Backlog | None = None,
                 sweep_age: timedelta = timedelta(seconds=5)) -> None:
        self.storage = storage
        self.resend = resend
        self.ledger = Ledger(clock)
        self.clock = clock
        self.mark_delay = mark_delay
        self.sweep_age = sweep_age  # for :meth:`sweep_when_due`
        self.sweeps = Alarm()  # rung when a save fails: what it left comes of age then
        self.backlog = backlog  # what the last sweep sent again plus the saves unsettled
        self.marks: dict[str, datetime] = {}  # other writers' marks as last read
        self.swept_last = 0  # documents the last sweep sent again
        self._marked: datetime | None = None  # the mark as last written
        self._marked_at = -float("inf")  # when (monotonic), for REFRESH
        self._marking = asyncio.Lock()
        self._resent: dict[tuple[str, int], tuple[str, datetime]] = {}

    @property
    def writer(self) -> str:
        return self.ledger.writer

    # -- a save --------------------------------------------------------------------------------
    async def stamp(self) -> datetime:
        """The stamp of a save about to be written; :meth:`settle` it once its work is done."""
        await self._refresh_mark()
        return self.ledger.stamp()

    def settle(self, stamp: datetime, published: bool) -> None:
        """The save stamped ``stamp`` did its work (or failed: in doubt until swept)."""
        self.ledger.settle(stamp, published)
        if not published:
            self.sweeps.due(stamp + self.sweep_age)

    # -- a read --------------------------------------------------------------------------------
    def covers(self, doc: Mapping[str, Any], *, in_flight: bool = True) -> bool | None:
        """Whether what ``doc``'s save left to do is done: its writer's mark covers its stamp
        (None: a writer whose mark was not read yet; False: no stamp)."""
        writer, stamp = doc.get("outbox_by"), doc.get("outbox_at")
        if writer is None or stamp is None:
            return False  # written before marks: the sweep or the next save sends it
        if writer == self.ledger.writer:
            return self.ledger.published(aware(stamp), in_flight=in_flight)
        mark = self.marks.get(writer)
        return None if mark is None else aware(stamp) <= mark

    def is_published(self, doc: Mapping[str, Any], *, in_flight: bool = True) -> bool | None:
        """Whether ``doc``'s outbox went out (None: its writer's mark is not known yet)."""
        return True if not doc.get("outbox") else self.covers(doc, in_flight=in_flight)

    def forget_published(self, doc: Document, *, in_flight: bool = True) -> Document:
        """Drop from a document just read an outbox that went out (for reads that only show
        it; a save's load calls :meth:`before_load` first)."""
        if self.is_published(doc, in_flight=in_flight):
            doc["outbox"] = []
            doc.pop("outbox_at", None)
            doc.pop("outbox_by", None)
        return doc

    async def before_load(self, docs: Iterable[Mapping[str, Any]]) -> None:
        """Before reading documents to decide on and save: wait for this writer's saves of
        them still publishing (carried along, an outbox would go out twice; dropped, it
        could be lost), and read the marks of writers not heard of yet."""
        docs = list(docs)
        mine = [aware(d["outbox_at"]) for d in docs
                if d.get("outbox_at") and d.get("outbox_by") == self.ledger.writer]
        await self.ledger.settled(mine)
        unheard = {d["outbox_by"] for d in docs if self.covers(d) is None}
        if unheard:
            await self._learn_marks(unheard)

    async def _learn_marks(self, seen: Iterable[str] = ()) -> Marks:
        """Read every writer's mark.  A writer seen without one has none any more (it
        marks before its first save and is retired only once silent for long, all its
        outboxes sent): what it stamped before this read is covered."""
        read_at = self.clock()
        marks = await self.storage.read_marks()
        known = {w: aware(m["through"]) for w, m in marks.items() if m.get("through")}
        for writer in {*self.marks, *seen} - known.keys():
            known[writer] = read_at - REFRESH
        self.marks = known
        return marks

    # -- the mark --------------------------------------------------------------------------------
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
        await self.storage.write_mark(self.ledger.writer, through, self.clock())
        self._marked, self._marked_at = through, started

    # -- the sweep -------------------------------------------------------------------------------
    async def sweep(self, older_than: timedelta = timedelta(seconds=5)) -> int:
        """Send again what a crash (or a failed save) left beyond the marks; how many documents.

        This writer's own saves in flight are never sent again by it; another writer's
        beyond its mark and older than ``older_than`` are (a live but slow one sends them
        too: a rare duplicate).  A writer long silent with nothing left is retired.
        """
        cutoff = self.clock() - older_than
        swept = await self._sweep_own(cutoff)
        marks = await self._learn_marks()
        for writer, mark in marks.items():
            if writer != self.ledger.writer:
                swept += await self._sweep_writer(writer, mark, cutoff)
        swept += await self.storage.sweep_unmarked(cutoff, self.resend)
        self.swept_last = swept
        if swept:
            log.warning("published again the outboxes of %d documents left by a crash", swept)
        if self.backlog is not None:
            self.backlog.set(swept + len(self.ledger.in_flight) + len(self.ledger.in_doubt))
        return swept

    async def sweep_when_due(self) -> datetime | None:
        """A job that wakes on what is due (shared/due.py, with :attr:`sweeps`): sweeps, and
        answers when this writer's own failed saves come of age.  Another writer's leftovers
        have no due time here: they are found within the loop's longest sleep."""
        await self.sweep(self.sweep_age)
        doubtful = self.ledger.in_doubt
        return min(doubtful) + self.sweep_age if doubtful else None

    async def _sweep_own(self, cutoff: datetime) -> int:
        doubtful = sorted(s for s in self.ledger.in_doubt if s <= cutoff)
        if not doubtful:
            return 0
        docs = await self.storage.stamped_at(self.ledger.writer, doubtful)
        await self.resend(docs)
        self.ledger.recovered(doubtful)
        return len(docs)

    async def _sweep_writer(self, writer: str, mark: Mapping[str, Any],
                            cutoff: datetime) -> int:
        through = aware(mark.get("through") or EPOCH)
        marked_at = aware(mark["at"]) if mark.get("at") else None
        sent = 0
        if through < cutoff:
            docs = await self.storage.stamped(writer, through, cutoff)
            fresh = [d for d in docs if (d["_id"], d["revision"]) not in self._resent]
            await self.resend(fresh)
            self._resent.update({(d["_id"], d["revision"]): (writer, aware(d["outbox_at"]))
                                 for d in fresh})
            sent = len(fresh)
            moved = cutoff - LATE_WRITES
            if moved > through:
                await self.storage.write_mark(writer, moved, None)
                through = moved
        self._resent = {k: v for k, v in self._resent.items()
                        if v[0] != writer or v[1] > through}
        # Its stamps are all within REFRESH of its last mark (it marks again before a save
        # otherwise): once the mark covers that, nothing of it is left to send.
        if through >= (marked_at or EPOCH) + REFRESH:
            await self.storage.retire(writer, marked_at)
        return sent
