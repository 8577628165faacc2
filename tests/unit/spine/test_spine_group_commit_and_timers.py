"""act(key, command) group-commits, retries only the losers; the timer loop leases, fires
once, drops stale timers and wakes on what is due.  Counted on the in-memory store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.spine import Aggregate, Conflict, Decided, GroupCommit, TimerDue, TimerLoop
from shared.spine.memory_store import MemoryAggregateStore

AT = datetime(2026, 1, 1, 9, tzinfo=UTC)


class Tally:
    """Commands add to a counter; a negative amount is refused (a reply, no change)."""

    def __init__(self) -> None:
        self.decided: list[tuple[str, Any]] = []

    def __call__(self, aggregate: Aggregate, command: Any) -> Decided:
        self.decided.append((aggregate.key, command))
        total = (aggregate.state or {}).get("total", 0)
        if isinstance(command, TimerDue):
            return Decided(state={"total": total, "fired": command.timer["purpose"]},
                           reply="fired")
        if command < 0:
            return Decided(reply=f"refused {command}")
        return Decided(state={"total": total + command, "epoch": 1}, reply=total + command)


async def test_concurrent_commands_cost_one_find_and_one_write() -> None:
    store, decide = MemoryAggregateStore(), Tally()
    actor = GroupCommit(store, decide)
    replies = await asyncio.gather(*(actor.act(f"item-{i}", 1) for i in range(50)),
                                   actor.act("item-0", 10), actor.act("item-1", -1))
    assert store.round_trips == {"find": 1, "write": 1} and actor.rounds == 1
    assert replies[:50] == [1] * 50
    assert replies[50] == 11  # the second command on item-0 saw the first
    assert replies[51] == "refused -1"  # each caller gets its own answer
    assert store.documents["item-0"]["total"] == 11


async def test_callers_arriving_during_a_save_share_the_next_write() -> None:
    store = MemoryAggregateStore()
    actor = GroupCommit(store, Tally())
    late: list[asyncio.Task[Any]] = []

    async def arrive_while_writing() -> None:
        late.extend(asyncio.create_task(actor.act(f"late-{i}", 1)) for i in range(20))
        await asyncio.sleep(0)

    store.before_write = arrive_while_writing
    assert await actor.act("first", 1) == 1
    assert await asyncio.gather(*late) == [1] * 20
    assert store.round_trips == {"find": 2, "write": 2} and actor.rounds == 2


async def test_only_the_losing_commands_are_decided_again() -> None:
    store, decide = MemoryAggregateStore(), Tally()
    store.insert({"_id": "hot", "revision": 1, "total": 0})
    actor = GroupCommit(store, decide)

    async def another_writer() -> None:
        store.documents["hot"].update(revision=2, total=100)

    store.before_write = another_writer
    replies = await asyncio.gather(actor.act("hot", 1), actor.act("cold", 1))
    assert replies == [101, 1]  # decided again on what the other writer left
    assert [key for key, _ in decide.decided] == ["hot", "cold", "hot"]
    assert store.round_trips == {"find": 2, "write": 2}


async def test_a_command_that_keeps_losing_ends_in_a_conflict() -> None:
    store = MemoryAggregateStore()
    store.insert({"_id": "hot", "revision": 1, "total": 0})
    actor = GroupCommit(store, Tally(), attempts=3)
    original = store._write

    async def always_moved(docs: Any) -> set[str]:
        store.documents["hot"]["revision"] += 1
        return await original(docs)

    store._write = always_moved  # type: ignore[method-assign]
    with pytest.raises(Conflict) as raised:
        await actor.act("hot", 1)
    assert raised.value.keys == ("hot",) and actor.rounds == 3


def reminder(due: datetime, epoch: int = 1) -> dict[str, Any]:
    return {"purpose": "reminder", "due_at": due, "epoch": epoch}


async def test_a_tick_leases_and_fires_what_is_due_in_one_write() -> None:
    store, decide = MemoryAggregateStore(), Tally()
    soon = AT + timedelta(seconds=20)
    for i in range(5):
        store.insert({"_id": f"t{i}", "revision": 1, "total": 0, "epoch": 1,
                      "timers": [reminder(AT), reminder(soon)], "next_timer_at": AT})
    loop = TimerLoop(store, GroupCommit(store, decide), clock=lambda: AT)
    fired, upcoming = await loop.tick()
    assert fired == 5 and upcoming == soon
    # due (find), the lease (claim), then the fires group-committed: one find, one write
    assert store.round_trips == {"find": 2, "claim": 1, "write": 1}
    assert all(d["timers"] == [reminder(soon)] and d["next_timer_at"] == soon
               for d in store.documents.values())


async def test_a_timer_two_replicas_see_is_claimed_and_fired_by_one() -> None:
    store = MemoryAggregateStore()
    store.insert({"_id": "t", "revision": 1, "epoch": 1, "timers": [reminder(AT)],
                  "next_timer_at": AT})
    one, two = Tally(), Tally()
    loops = [TimerLoop(store, GroupCommit(store, d), clock=lambda: AT) for d in (one, two)]
    seen = [await loop.store.due(AT, 10) for loop in loops]  # both read it due...
    claims = [await store.claim(s, AT + timedelta(seconds=30)) for s in seen]
    assert claims == [["t"], []]  # ...one lease
    fired = await asyncio.gather(*(loop.tick() for loop in loops))
    assert [f for f, _ in fired] == [0, 0]  # leased: due again only when the lease ends


async def test_a_stale_timer_does_nothing_and_one_of_an_old_epoch_only_leaves() -> None:
    store, decide = MemoryAggregateStore(), Tally()
    store.insert({"_id": "t", "revision": 1, "epoch": 2,
                  "timers": [reminder(AT, epoch=1)], "next_timer_at": AT})
    actor = GroupCommit(store, decide)
    assert await actor.act("t", TimerDue(reminder(AT - timedelta(hours=1)))) is None
    assert store.round_trips["write"] == 0  # not pending: fired already, nothing written
    assert await actor.act("t", TimerDue(reminder(AT, epoch=1))) is None
    assert decide.decided == []  # the service never saw either
    assert store.documents["t"]["timers"] == [] and "next_timer_at" not in store.documents["t"]


async def test_the_loop_sleeps_until_what_is_due_and_wakes_for_an_earlier_save() -> None:
    store = MemoryAggregateStore()
    actor = GroupCommit(store, Tally())
    loop = TimerLoop(store, actor, clock=lambda: AT, max_sleep=30.0)
    sleeping = asyncio.create_task(loop.run_once())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert loop.wake_at == AT + timedelta(seconds=30)  # nothing known: the longest sleep
    later = AT + timedelta(seconds=40)
    await store.save([Aggregate("x").after(Decided(state={}, timers=[reminder(later)]))])
    await asyncio.sleep(0)
    assert not sleeping.done()  # a timer after the planned wake changes nothing
    sooner = AT + timedelta(seconds=5)
    await store.save([Aggregate("y").after(Decided(state={}, timers=[reminder(sooner)]))])
    assert await asyncio.wait_for(sleeping, 5) == 0  # woken early, long before 30 s
    assert store.round_trips["find"] == 1  # one read per wake, no polling in between
