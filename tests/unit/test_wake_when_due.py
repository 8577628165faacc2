"""Periodic jobs wake on what is due, not on a short clock (shared/due.py).

Simulated time: a fake clock and a fake wait that moves it on, so the tests count the
store queries of N simulated seconds and never sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contracts.envelope import new_event
from contracts.events.workitems import WorkItemCancelRequested
from services.notification.jobs import RetrySweeper
from services.stage_coordinator.jobs import TimerFirer
from shared.due import Alarm, DueLoop
from shared.spine import Aggregate, Decided
from shared.spine.memory_store import MemoryAggregateStore

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
MAX_SLEEP = timedelta(seconds=30)


@dataclass
class SimulatedTime:
    now: datetime = T0
    rings: list[tuple[datetime, Callable[[], None]]] = field(default_factory=list)
    waits: int = 0

    def clock(self) -> datetime:
        return self.now

    def at(self, when: datetime, action: Callable[[], None]) -> None:
        """Do ``action`` (a save elsewhere in the process) once the clock reaches ``when``."""
        self.rings.append((when, action))
        self.rings.sort(key=lambda ring: ring[0])

    async def wait(self, event: asyncio.Event, seconds: float) -> None:
        self.waits += 1
        until = self.now + timedelta(seconds=seconds)
        while self.rings and self.rings[0][0] <= until and not event.is_set():
            when, action = self.rings.pop(0)
            self.now = max(self.now, when)
            action()
        if not event.is_set():
            self.now = until

    async def run(self, loop: DueLoop, seconds: float) -> None:
        end = self.now + timedelta(seconds=seconds)
        while self.now < end:
            await loop.once()


class Cursor:
    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs

    def sort(self, *_: Any) -> Cursor:
        return self

    def limit(self, n: int) -> Cursor:
        return Cursor(self.docs[:n])

    async def to_list(self, _: Any) -> list[dict[str, Any]]:
        return list(self.docs)

    def __aiter__(self) -> Any:
        async def each() -> Any:
            for doc in self.docs:
                yield doc
        return each()


class Runs:
    """The queries the timer firer sends; the timers live in ``upcoming`` (due later)."""

    def __init__(self, time: SimulatedTime) -> None:
        self.time = time
        self.finds = 0
        self.timers: list[datetime] = []

    def find(self, query: dict[str, Any], *_: Any) -> Cursor:
        self.finds += 1
        now = self.time.now
        if "timer_lease_until" in query:  # due_timers: none is due in these tests
            return Cursor([{"_id": "r", "next_timer_at": t, "timers": []}
                           for t in self.timers if t <= now][:0])
        return Cursor([{"next_timer_at": t} for t in sorted(self.timers) if t > now])


class Publisher:
    async def publish(self, messages: Any) -> None:
        list(messages)


def timer_loop(time: SimulatedTime) -> tuple[DueLoop, Runs, Alarm]:
    runs = Runs(time)
    alarm = Alarm()
    firer = TimerFirer(runs, Publisher(), clock=time.clock)  # type: ignore[arg-type]
    return DueLoop(firer, alarm, MAX_SLEEP, clock=time.clock, wait=time.wait), runs, alarm


async def test_an_idle_timer_firer_queries_twice_per_longest_sleep() -> None:
    time = SimulatedTime()
    loop, runs, _ = timer_loop(time)
    await time.run(loop, 600)
    wakes = 600 // 30
    assert loop.runs <= wakes + 1
    assert runs.finds <= 2 * (wakes + 1)  # the 0.5 s poll it replaces: 1,200 wakes


async def test_saving_an_earlier_timer_wakes_the_firer_once_and_it_sleeps_until_then() -> None:
    time = SimulatedTime()
    loop, runs, alarm = timer_loop(time)
    due = T0 + timedelta(seconds=12)

    def save_timer() -> None:  # what RunStore.save does when a run gets a timer
        runs.timers.append(due)
        alarm.due(due)
    time.at(T0 + timedelta(seconds=2), save_timer)
    time.at(T0 + timedelta(seconds=3), lambda: alarm.due(due + timedelta(minutes=5)))
    await loop.once()  # the first look, at T0: nothing; it would sleep until T0+30
    assert loop.runs == 1 and time.now == T0 + timedelta(seconds=2)  # woken by the save
    await loop.once()  # finds the timer and sleeps until it is due; the later one saved
    assert loop.runs == 2 and time.now == due  # at T0+3 does not wake it
    assert runs.finds == 4


async def test_a_firer_that_claimed_timers_looks_again_when_its_lease_runs_out() -> None:
    time = SimulatedTime()
    runs = Runs(time)
    runs.timers = [T0 - timedelta(seconds=1)]

    class Claimable(Runs):
        async def update_one(self, *_: Any) -> Any:
            return type("Result", (), {"modified_count": 1})()

        def find(self, query: dict[str, Any], *args: Any) -> Cursor:
            if "timer_lease_until" in query:
                self.finds += 1
                return Cursor([{"_id": "r", "next_timer_at": T0 - timedelta(seconds=1),
                                "timers": [{"id": "t", "purpose": "wait",
                                            "due_at": T0 - timedelta(seconds=1)}]}])
            return super().find(query, *args)

    firer = TimerFirer(Claimable(time), Publisher(), clock=time.clock)  # type: ignore[arg-type]
    assert await firer() == T0 + timedelta(seconds=30)  # the lease: fired again if not applied
    assert firer.fired == 1


@dataclass
class Deliveries:
    """The retry sweep's store: pending deliveries by their next attempt."""

    time: SimulatedTime
    attempts: list[datetime] = field(default_factory=list)
    retries: Alarm = field(default_factory=Alarm)
    queries: int = 0

    async def due_ids(self, now: datetime, limit: int) -> list[str]:
        self.queries += 1
        due = [a for a in self.attempts if a <= now]
        self.attempts = [a for a in self.attempts if a > now]
        return [f"d{i}" for i, _ in enumerate(due)][:limit]

    async def count_pending(self) -> int:
        self.queries += 1
        return len(self.attempts)

    async def next_attempt_at(self, now: datetime) -> datetime | None:
        self.queries += 1
        return min((a for a in self.attempts if a > now), default=None)


class Dispatcher:
    def __init__(self, time: SimulatedTime) -> None:
        self.time = time
        self.sent: list[tuple[datetime, str]] = []

    async def dispatch(self, ids: list[str]) -> int:
        self.sent.extend((self.time.now, i) for i in ids)
        return len(ids)


class Gauge:
    def set(self, value: float) -> None:
        pass


def retry_loop(time: SimulatedTime) -> tuple[DueLoop, Deliveries, Dispatcher]:
    store, dispatcher = Deliveries(time), Dispatcher(time)
    metrics = type("Metrics", (), {"pending": Gauge()})()
    sweeper = RetrySweeper(store, dispatcher, metrics, clock=time.clock)  # type: ignore[arg-type]
    loop = DueLoop(sweeper, store.retries, MAX_SLEEP, clock=time.clock, wait=time.wait)
    return loop, store, dispatcher


async def test_an_idle_retry_sweep_queries_twice_per_longest_sleep() -> None:
    time = SimulatedTime()
    loop, store, _ = retry_loop(time)
    await time.run(loop, 600)
    assert store.queries <= 2 * (600 // 30 + 1)  # the 1 s poll it replaces: 1,200 wakes


async def test_a_stored_retry_wakes_the_sweep_which_sends_it_when_due() -> None:
    time = SimulatedTime()
    loop, store, dispatcher = retry_loop(time)
    retry_at = T0 + timedelta(seconds=7)

    def failed_send() -> None:  # DeliveryStore.record of an attempt to retry later
        store.attempts.append(retry_at)
        store.retries.due(retry_at)
    time.at(T0 + timedelta(seconds=1), failed_send)
    await time.run(loop, 8)
    assert dispatcher.sent == [(retry_at, "d0")]
    assert loop.runs == 3  # at T0, at the failed send, at the retry


@pytest.mark.parametrize("ring", [None, T0 + timedelta(hours=1)])
async def test_an_alarm_for_later_than_planned_does_not_wake(ring: datetime | None) -> None:
    alarm = Alarm()
    alarm.next_due = T0 + timedelta(seconds=30)
    alarm.due(ring)
    assert not alarm.event.is_set() and alarm.next_due == T0 + timedelta(seconds=30)


def a_change() -> Aggregate:
    message = new_event(WorkItemCancelRequested(step="a", reason="r"), producer="test",
                        run_id="r1")
    return Aggregate("r1").after(Decided(state={"step": "a"}, publish=[message]))


async def test_an_idle_outbox_sweep_reads_the_marks_once_per_longest_sleep_and_a_failed_save_rings(
) -> None:
    time = SimulatedTime()
    store = MemoryAggregateStore(clock=time.clock)
    outboxes = store.outboxes  # the marks' sweep, as the coordinator runs it
    loop = DueLoop(outboxes.sweep_when_due, outboxes.sweeps, MAX_SLEEP, clock=time.clock,
                   wait=time.wait)
    await time.run(loop, 600)
    assert store.round_trips["find"] <= 600 // 30 + 1  # the marks, once a wake

    outboxes.sweeps.next_due = time.now + MAX_SLEEP  # the loop sleeps its longest sleep
    store.broken = True  # a save whose publish fails: its outbox stays in doubt
    with pytest.raises(ConnectionError):
        await store.save([a_change()])
    store.broken = False
    failed_at = time.now
    assert outboxes.sweeps.event.is_set()  # it wakes
    assert outboxes.sweeps.next_due == failed_at + timedelta(seconds=5)
    await loop.once()  # too young: it sleeps until the failed save is 5 s old
    assert store.published == [] and time.now == failed_at + timedelta(seconds=5)
    await loop.once()
    assert len(store.published) == 1 and not store.ledger.in_doubt
