"""What one writer knows of its outboxes: stamps in flight, stamps in doubt, published-through.

Every store instance is a writer with an id of its own.  Each save that carries outboxes
gets a stamp, strictly increasing per writer (milliseconds: what MongoDB keeps of a
date), written as ``outbox_at`` with ``outbox_by`` = the writer.  An outbox is never
cleared by a write of its own: the writer's mark says how far its outboxes went out
(every stamp up to ``through`` is published), and the next save of the aggregate
overwrites the outbox anyway (docs/decisions/0016-outbox-watermarks.md).

Saves run concurrently (group commit, consumed batches, timers), so the mark is the
stamp before the least one not yet settled, not the last one published.  A save whose
write or publish failed leaves its stamp in doubt: only the sweep settles it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

MS = timedelta(milliseconds=1)


def to_ms(at: datetime) -> datetime:
    """``at`` as MongoDB stores a date (milliseconds), so a stamp reads back equal."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


class Ledger:
    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.writer = uuid.uuid4().hex
        self.clock = clock
        self.last = to_ms(clock())  # every stamp of this writer is after its start
        self.in_flight: dict[datetime, asyncio.Future[bool]] = {}
        self.in_doubt: set[datetime] = set()
        self.moved = asyncio.Event()  # the mark moved on since the last look

    def stamp(self) -> datetime:
        """The stamp of a save about to be written (settle it once published, or not)."""
        self.last = max(to_ms(self.clock()), self.last + MS)
        self.in_flight[self.last] = asyncio.get_running_loop().create_future()
        return self.last

    def settle(self, stamp: datetime, published: bool) -> None:
        """The save stamped ``stamp`` published its outboxes (or failed: in doubt now)."""
        future = self.in_flight.pop(stamp)
        future.set_result(published)
        if not published:
            self.in_doubt.add(stamp)
        self.moved.set()

    def recovered(self, stamps: Iterable[datetime]) -> None:
        """The sweep published what these stamps left (or found nothing of them)."""
        self.in_doubt.difference_update(stamps)
        self.moved.set()

    @property
    def through(self) -> datetime:
        """Every outbox this writer stamped up to here is published."""
        pending = [*self.in_flight, *self.in_doubt]
        return min(pending) - MS if pending else self.last

    def published(self, stamp: datetime, *, in_flight: bool) -> bool:
        """Whether this writer's outbox stamped ``stamp`` is out (``in_flight``: count a
        save still publishing as out, for a read that writes nothing)."""
        if stamp in self.in_doubt or stamp > self.last:
            return False
        return in_flight or stamp not in self.in_flight

    async def settled(self, stamps: Iterable[datetime]) -> None:
        """Wait until the saves stamped ``stamps`` (those in flight) are done publishing."""
        waiting = [self.in_flight[s] for s in set(stamps) if s in self.in_flight]
        if waiting:
            await asyncio.gather(*waiting)
