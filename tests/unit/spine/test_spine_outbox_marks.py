"""Outboxes marked, not cleared: what a save writes, what the sweep sends again after a crash
at each point, and what it leaves alone.  On the in-memory store; a second store
``sharing`` the documents is another replica, or the process after a restart.  Counted."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from contracts import Envelope
from contracts.envelope import new_event
from contracts.events.workitems import WorkItemCancelRequested
from shared.spine import Aggregate, Decided
from shared.spine.memory_store import MemoryAggregateStore


class Clock:
    """The stores' time: a test moves it on past the sweep's age (5 s) itself."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def later(self, seconds: float = 10) -> None:
        self.now += timedelta(seconds=seconds)


def stores(n: int = 2) -> tuple[Clock, list[MemoryAggregateStore]]:
    """A clock and ``n`` stores on the same documents (the first writes, the others are
    other replicas or the process after a restart); the sweep finds a stamp by its key in
    ``lookup``, as on MongoDB (decision 37)."""
    clock = Clock()
    first = MemoryAggregateStore(clock=clock, key_field="lookup")
    return clock, [first, *(MemoryAggregateStore(sharing=first, clock=clock)
                            for _ in range(n - 1))]


def told(key: str, step: str = "a") -> Envelope:
    return new_event(WorkItemCancelRequested(step=step, reason="r"), producer="test",
                     run_id=key)


def change(key: str, step: str = "a") -> Aggregate:
    return Aggregate(key).after(Decided(state={"step": step}, publish=[told(key, step)]))


class Gated(MemoryAggregateStore):
    """A store whose publishing waits for the test: a save stays in flight."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock, key_field="lookup")
        self.gate = asyncio.Event()
        self.sending = asyncio.Event()

    async def _send(self, envelopes: Sequence[Envelope]) -> None:
        self.sending.set()
        await self.gate.wait()
        await super()._send(envelopes)


async def test_the_normal_path_writes_each_change_once_and_sends_nothing_again() -> None:
    clock, (store, other) = stores()
    keys = [uuid.uuid4().hex for _ in range(3)]
    await store.save([change(k) for k in keys])
    assert await store.mark_when_published()  # the job: one mark for the whole save
    assert store.round_trips == {"write": 1, "mark": 2}  # the first mark came before it
    clock.later()
    assert await store.sweep() == 0 and await other.sweep() == 0
    assert len(store.published) == 3 and other.published == []
    assert all(d["outbox"] for d in store.documents.values())  # no clear was written
    loaded = await other.load(keys)  # the mark covers them: read as sent
    assert all(a.outbox == () for a in loaded.values())


async def test_a_crash_between_the_write_and_the_publish_is_sent_by_another_store() -> None:
    clock, (store, restarted) = stores()
    key = uuid.uuid4().hex
    store.broken = True  # the process dies (or the broker is away) before publishing
    with pytest.raises(ConnectionError):
        await store.save([change(key)])
    assert store.documents[key]["outbox"] and store.published == []
    assert await restarted.sweep() == 0  # not before the sweep's age
    clock.later()
    assert await restarted.sweep() == 1
    assert [e.run_id for e in restarted.published] == [key]
    clock.later()
    assert await restarted.sweep() == 0  # once: not again on every sweep
    assert len(restarted.published) == 1


async def test_a_crash_after_the_publish_before_the_mark_sends_it_again_harmlessly() -> None:
    clock, (store, restarted) = stores()
    key = uuid.uuid4().hex
    await store.save([change(key)])  # published; the mark job never ran
    clock.later()
    assert await restarted.sweep() == 1
    assert [e.event_id for e in restarted.published] == [e.event_id for e in store.published]


async def test_a_sweep_never_sends_again_what_its_own_store_is_publishing() -> None:
    clock = Clock()
    store, key = Gated(clock), uuid.uuid4().hex
    saving = asyncio.create_task(store.save([change(key)]))
    await store.sending.wait()
    clock.later()
    assert await store.sweep() == 0  # in flight, however long publishing takes
    store.gate.set()
    await saving
    clock.later()
    assert await store.sweep() == 0
    assert len(store.published) == 1


async def test_a_load_waits_for_its_own_store_publishing_then_reads_the_outbox_as_sent() -> None:
    """Carried along, the outbox would go out twice; dropped while in flight, a crash
    before the publish would lose it."""
    store, key = Gated(Clock()), uuid.uuid4().hex
    saving = asyncio.create_task(store.save([change(key)]))
    await store.sending.wait()
    loading = asyncio.create_task(store.load([key]))
    for _ in range(5):
        await asyncio.sleep(0)  # let it run as far as it can
    assert not loading.done()
    store.gate.set()
    await saving
    loaded = (await loading)[key]
    assert loaded.outbox == ()
    await store.save([loaded.after(Decided(state={"step": "b"}, publish=[told(key, "b")]))])
    assert [e.payload.step for e in store.published] == ["a", "b"]  # type: ignore[attr-defined]


async def test_a_failed_publish_is_carried_by_the_next_save_and_then_recovered() -> None:
    clock, (store,) = stores(1)
    key = uuid.uuid4().hex
    store.broken = True
    with pytest.raises(ConnectionError):
        await store.save([change(key)])
    store.broken = False
    stuck = store.ledger.through
    loaded = (await store.load([key]))[key]
    assert len(loaded.outbox) == 1  # not sent: it travels with the next change
    clock.later()
    assert await store.sweep() == 1  # or the sweep sends it; either way once more
    assert store.ledger.through > stuck and not store.ledger.in_doubt


async def test_a_writer_long_silent_is_retired_and_its_outboxes_read_as_sent() -> None:
    clock, (store, restarted) = stores()
    key = uuid.uuid4().hex
    await store.save([change(key)])
    await store.write_mark()
    assert list(store.writers) == [store.ledger.writer]
    clock.later(180)  # the process stopped long ago
    assert await restarted.sweep() == 0
    assert store.writers == {}
    loaded = await restarted.load([key])
    assert loaded[key].outbox == ()
    assert restarted.published == []


async def test_another_writers_outbox_beyond_its_mark_is_carried_along() -> None:
    """A load cannot tell a live replica's outbox in flight from one a crash left: it is
    sent with the next change (consumers drop the repeat)."""
    _, (store, other) = stores()
    key = uuid.uuid4().hex
    await store.save([change(key)])  # its mark was written before, not after
    loaded = (await other.load([key]))[key]
    assert len(loaded.outbox) == 1


async def test_concurrent_first_saves_write_the_writers_mark_once() -> None:
    _, (store,) = stores(1)
    await asyncio.gather(*(store.save([change(uuid.uuid4().hex)]) for _ in range(3)))
    assert store.round_trips == {"mark": 1, "write": 3}
