"""The spine's store and process(batch) on the in-memory store: what lands, what is
published, what a conflict names, and what a batch costs (counted, not timed)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import shared.outgoing as outgoing_module
from contracts import Envelope, encode, parse
from contracts.envelope import new_event
from contracts.events.workitems import WorkItemCancelRequested
from shared.outgoing import opened_outbox, outgoing, packed_outbox
from shared.packed import packed
from shared.spine import Aggregate, Conflict, Decided, plan, process
from shared.spine.memory_store import MemoryAggregateStore

AT = datetime(2026, 1, 1, tzinfo=UTC)


def note(run_id: str, step: str) -> Envelope:
    """Any message will do: the spine looks only at its id and what the decider says."""
    return new_event(WorkItemCancelRequested(step=step, reason="r"), producer="test",
                     run_id=run_id)


class Counting:
    """A decider that counts the steps of each run in its aggregate (one per run)."""

    def __init__(self) -> None:
        self.decided = 0

    def select(self, batch: Sequence[Envelope]) -> dict[str, Any]:
        return {"_id": {"$in": sorted({e.run_id or "" for e in batch})}}

    def route(self, message: Envelope, aggregates: Mapping[str, Aggregate]) -> str | None:
        return message.run_id

    def decide(self, aggregate: Aggregate, message: Envelope) -> Decided:
        self.decided += 1
        steps = [*(aggregate.state or {}).get("steps", []), message.payload.step]  # type: ignore[attr-defined]
        told = new_event(WorkItemCancelRequested(step=f"told-{len(steps)}", reason="r"),
                         producer="test", run_id=aggregate.key)
        return Decided(state={"steps": steps}, publish=[told])

    def repeat(self, aggregate: Aggregate, message: Envelope) -> Sequence[Envelope]:
        return []


async def test_a_batch_costs_one_find_and_one_write_and_folds_many_messages_per_aggregate(
) -> None:
    store = MemoryAggregateStore()
    runs = [uuid.uuid4().hex for _ in range(5)]
    batch = [note(run, step) for step in ("a", "b") for run in runs]  # K = 10 messages
    decider = Counting()
    await process(store, batch, decider)
    # The writer's mark is written once before its first outbox (then about once a second).
    assert store.round_trips == {"find": 1, "write": 1, "mark": 1}
    assert all(store.documents[run]["steps"] == ["a", "b"] for run in runs)
    assert all(store.documents[run]["revision"] == 1 for run in runs)
    assert len(store.published) == 10  # every outbox went out after the write


async def test_a_redelivered_batch_is_dropped_by_the_inbox() -> None:
    store = MemoryAggregateStore()
    run = uuid.uuid4().hex
    batch = [note(run, "a"), note(run, "b")]
    await process(store, batch, Counting())
    decider = Counting()
    again = await process(store, batch, decider)
    assert decider.decided == 0 and again.changed == []
    assert store.round_trips["write"] == 1  # the repeat wrote nothing
    assert store.documents[run]["applied"] == [e.event_id for e in batch]


async def test_a_moved_revision_is_a_conflict_naming_only_its_keys() -> None:
    store = MemoryAggregateStore()
    one, two = uuid.uuid4().hex, uuid.uuid4().hex
    await process(store, [note(one, "a"), note(two, "a")], Counting())
    loaded = await store.load([one, two])
    stale = plan(loaded, [note(one, "b"), note(two, "b")], Counting())
    await process(store, [note(one, "c")], Counting())  # another writer moves `one` on
    published = len(store.published)
    with pytest.raises(Conflict) as raised:
        await store.save(stale.changed)
    assert raised.value.keys == (one,)
    assert store.documents[two]["steps"] == ["a", "b"]  # the other landed...
    assert len(store.published) == published + 1  # ...and only its outbox went out
    assert store.documents[one]["steps"] == ["a", "c"]


async def test_a_new_aggregate_written_twice_conflicts() -> None:
    store = MemoryAggregateStore()
    key = uuid.uuid4().hex
    first = Aggregate(key).after(Decided(state={"n": 1}))
    second = Aggregate(key).after(Decided(state={"n": 2}))
    await store.save([first])
    with pytest.raises(Conflict):
        await store.save([second])
    assert store.documents[key]["n"] == 1


async def test_published_outboxes_cost_no_write_and_are_read_as_sent() -> None:
    store = MemoryAggregateStore()
    runs = [uuid.uuid4().hex for _ in range(3)]
    await process(store, [note(run, "a") for run in runs], Counting())
    assert all(store.documents[run]["outbox"] for run in runs)  # never cleared by a write...
    assert all(store.documents[run]["outbox_by"] == store.ledger.writer for run in runs)
    loaded = await store.load(runs)
    assert all(a.outbox == () for a in loaded.values())  # ...but read as sent
    # The next save of one aggregate overwrites its outbox with the new one only.
    await process(store, [note(runs[0], "b")], Counting())
    outbox = opened_outbox(store.documents[runs[0]]["outbox"])
    assert [parse(m.value).payload.step for m in outbox] == ["told-2"]  # type: ignore[attr-defined]
    assert store.round_trips["write"] == 2 and len(store.published) == 4


@pytest.mark.parametrize("form", ["records", "packed envelopes", "envelopes"])
async def test_a_leftover_outbox_goes_out_with_the_next_change(form: str) -> None:
    """An outbox a crash left (written, never published) travels with the next write, as
    this version stores it (one packed value) or as earlier ones did (a list of envelopes,
    packed or as subdocuments)."""
    store = MemoryAggregateStore()
    run = uuid.uuid4().hex
    leftover = note(run, "lost")
    stored: Any = {"records": packed_outbox([outgoing(leftover)]),
                   "packed envelopes": [packed(leftover.model_dump(mode="json"))],
                   "envelopes": [leftover.model_dump(mode="json")]}[form]
    store.insert({"_id": run, "revision": 4, "steps": [], "outbox": stored,
                  "outbox_at": AT, "timers": []})
    await process(store, [note(run, "a")], Counting())
    assert [e.payload.step for e in store.published] == ["lost", "told-1"]  # type: ignore[attr-defined]
    assert store.sent[0] == outgoing(leftover)  # the same bytes as when it was built
    assert store.documents[run]["revision"] == 5


async def test_timers_are_kept_sorted_with_the_soonest_indexed_and_announced() -> None:
    store = MemoryAggregateStore()
    heard: list[datetime] = []
    store.on_timer(heard.append)
    later, sooner = AT + timedelta(hours=2), AT + timedelta(hours=1)
    timers = [{"purpose": "x", "due_at": later}, {"purpose": "y", "due_at": sooner}]
    await store.save([Aggregate("k").after(Decided(state={}, timers=timers))])
    doc = store.documents["k"]
    assert [t["due_at"] for t in doc["timers"]] == [sooner, later]
    assert doc["next_timer_at"] == sooner and heard == [sooner]
    await store.save([(await store.load(["k"]))["k"].after(Decided(timers=[]))])
    assert "next_timer_at" not in store.documents["k"]


async def test_a_message_is_encoded_once_and_goes_out_as_its_outbox_holds_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Decision 35: what the producer sends is encoded when the message is decided; the
    document keeps those bytes (one packed value) and the publish sends them as they are."""
    encoded: list[Envelope] = []

    def counted(envelope: Envelope) -> bytes:
        encoded.append(envelope)
        return encode(envelope)

    monkeypatch.setattr(outgoing_module, "encode", counted)
    store = MemoryAggregateStore()
    runs = [uuid.uuid4().hex for _ in range(3)]
    await process(store, [note(run, "a") for run in runs], Counting())
    assert len(encoded) == 3 and len(store.sent) == 3
    kept = [m for run in runs for m in opened_outbox(store.documents[run]["outbox"])]
    assert all(isinstance(store.documents[run]["outbox"], bytes) for run in runs)
    assert kept == store.sent
    assert [m.value for m in store.sent] == [encode(e) for e in encoded]
    assert [m.type for m in store.sent] == ["WorkItemCancelRequested"] * 3
