"""One timer mechanism for every stateful service: leased, epoch-guarded, woken by what is due.

Timers live in their aggregate (``timers``, the soonest as the indexed ``next_timer_at``;
the store creates that index with the first timer, and while it does not exist a tick
reads nothing: decision 36).
A tick reads the aggregates with a timer due soon (one find), leases the due ones to this
replica (one write, see ``claim``), and fires each due timer as ``act(key, TimerDue)``:
group-committed, so a tick's timers cost one find and one write more.  The fire is
written under the aggregate's revision and removes the timer, so a timer two replicas
fire lands once; one planned under an older epoch only leaves (see :mod:`shared.spine.act`).

Between ticks the loop sleeps until the soonest timer it knows of, at most ``max_sleep``
(timers other replicas plan are found by then), and wakes early when this process saves
an earlier one.  An idle service makes one small read per ``max_sleep`` (a ``listIndexes``
until the collection's first timer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.spine.act import GroupCommit
from shared.spine.aggregate import Conflict, TimerDue, aware
from shared.spine.store import AggregateStore

log = logging.getLogger("baton.spine.timers")


def utc_now() -> datetime:
    return datetime.now(UTC)


class TimerLoop:
    def __init__(
        self,
        store: AggregateStore,
        actor: GroupCommit,
        *,
        context: Callable[[], Awaitable[Any]] | None = None,
        max_sleep: float = 30.0,
        lease: float = 30.0,
        batch: int = 200,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.actor = actor
        self.context = context  # what the service needs to fire (e.g. its directory)
        self.max_sleep = max_sleep
        self.lease = lease
        self.batch = batch
        self.clock = clock
        self.wake_at: datetime | None = None
        self._wake = asyncio.Event()
        store.on_timer(self.notify)

    def notify(self, due_at: datetime) -> None:
        """A timer due at ``due_at`` was saved: wake up if that is before the planned wake."""
        if self.wake_at is None or aware(due_at) < self.wake_at:
            self._wake.set()

    async def tick(self) -> tuple[int, datetime | None]:
        """Fire what is due now: (timers fired, when the next known one is due)."""
        now = self.clock()
        found = await self.store.due(now + timedelta(seconds=self.max_sleep), self.batch)
        due = [entry for entry in found if aware(entry[1]) <= now]
        upcoming = [aware(at) for _, at, _ in found if aware(at) > now]
        if len(found) == self.batch and due:
            upcoming.append(now)  # more may be due than one batch: look again at once
        claimed = set(await self.store.claim(due, now + timedelta(seconds=self.lease)))
        context = await self.context() if self.context and claimed else None
        fires = [(key, timer) for key, _, timers in due if key in claimed
                 for timer in timers if aware(timer["due_at"]) <= now]
        upcoming += [aware(t["due_at"]) for key, _, timers in due if key in claimed
                     for t in timers if aware(t["due_at"]) > now]
        results = await asyncio.gather(
            *(self.actor.act(key, TimerDue(timer, context)) for key, timer in fires),
            return_exceptions=True)
        for (key, timer), result in zip(fires, results, strict=True):
            if isinstance(result, Conflict):
                log.info("timer of %s not fired: it kept changing (its lease ends later)", key)
            elif isinstance(result, Exception):
                log.error("timer %s of %s failed: %r", timer, key, result)
        fired = sum(not isinstance(r, Exception) for r in results)
        return fired, min(upcoming, default=None)

    async def run_once(self) -> int:
        """One tick, then sleep until the next known timer (a job for Runtime.every(0, ...))."""
        self._wake.clear()  # a save from here on (even during the tick) wakes the sleep
        try:
            fired, upcoming = await self.tick()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the timer tick failed; trying again in a second")
            fired, upcoming = 0, self.clock() + timedelta(seconds=1)
        await self.sleep_until(upcoming)
        return fired

    async def sleep_until(self, upcoming: datetime | None) -> None:
        now = self.clock()
        limit = now + timedelta(seconds=self.max_sleep)
        self.wake_at = limit if upcoming is None else max(now, min(upcoming, limit))
        seconds = (self.wake_at - now).total_seconds()
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), seconds)
        self.wake_at = None
