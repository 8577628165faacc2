"""Periodic work that wakes on what is due, not on a short clock.

A job does what is due and answers when it next has work (the smallest due time it
found in the store: one indexed find), or ``None`` when nothing is waiting.  The loop
sleeps until then, at most ``max_sleep``; a writer of this process that stores something
due sooner (a timer, a delivery to retry) rings the job's :class:`Alarm` and wakes it at
once.  What another replica stores is found within ``max_sleep``: that is the bound on
how late a crashed replica's due work is picked up, and an idle stack queries the store
once per job per ``max_sleep``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

log = logging.getLogger("baton.due")

DueJob = Callable[[], Awaitable[datetime | None]]
Clock = Callable[[], datetime]
Wait = Callable[[asyncio.Event, float], Awaitable[None]]


def utc_now() -> datetime:
    return datetime.now(UTC)


async def wait_for_event(event: asyncio.Event, seconds: float) -> None:
    """Return when ``event`` is set or ``seconds`` have passed, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=seconds)


class Alarm:
    """What this process knows about a job's next due time, and the bell that wakes it."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.next_due: datetime | None = None  # when the job plans to wake

    def due(self, at: datetime | None) -> None:
        """Something is due at ``at``: wake the job now if it planned to sleep longer."""
        if at is None:
            return
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        if self.next_due is None or at < self.next_due:
            self.next_due = at
            self.event.set()


class DueLoop:
    """Runs ``job`` whenever its work is due; a Runtime job that returns only on error."""

    def __init__(self, job: DueJob, alarm: Alarm, max_sleep: timedelta, *,
                 clock: Clock = utc_now, wait: Wait = wait_for_event) -> None:
        self.job = job
        self.alarm = alarm
        self.max_sleep = max_sleep
        self.clock = clock
        self.wait = wait
        self.runs = 0

    async def __call__(self) -> None:
        while True:
            await self.once()

    async def once(self) -> None:
        # Cleared before the job: a save while it runs rings again and is not missed.
        self.alarm.event.clear()
        self.alarm.next_due = None  # until the job says: any due time wakes it
        self.runs += 1
        next_due = await self.job()
        now = self.clock()
        latest = now + self.max_sleep
        wake = latest if next_due is None else max(now, min(next_due, latest))
        if self.alarm.next_due is not None and self.alarm.next_due < wake:
            wake = self.alarm.next_due  # rung during the job (its event is set, too)
        self.alarm.next_due = wake
        await self.wait(self.alarm.event, max(0.0, (wake - now).total_seconds()))
