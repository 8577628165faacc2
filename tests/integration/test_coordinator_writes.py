"""What one run of the bench workload costs the coordinator: documents written to MongoDB
(counted by the client's command listener, as the services count them) and messages
published, input by input (docs/decisions/0017-message-budget.md); and what a stop at each
point of a save leaves, and who sends it (docs/decisions/0016-outbox-watermarks.md).

The handler is driven as its one consumer drives it (decision 20: what workitems.events
gives it adapted as the consumer adapts it), with a recording publisher.  A
published outbox is never cleared: the coordinator's mark (written by a job, about once a
second, here when the test says) tells another coordinator's sweep that it went out.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import bson
import pytest
from e2e.conftest import wait_for
from prometheus_client import CollectorRegistry

from contracts import Envelope, parse
from contracts.envelope import new_event
from contracts.events.commands import StartRun
from contracts.events.steps import StepCompleted
from contracts.events.workitems import WorkItemAssigned, WorkItemCompleted, WorkItemDelegated
from services.stage_coordinator.dispatches import dispatched
from services.stage_coordinator.handler import CoordinatorHandler, from_work_items
from services.stage_coordinator.history import RUN_HISTORY, read_history
from services.stage_coordinator.metrics import CoordinatorMetrics
from services.stage_coordinator.store import (
    APPLIED_KEPT,
    RUNS,
    RunStore,
    WriteConflict,
    from_document,
    to_document,
    unpacked,
)
from shared.definitions.loading import load_definition
from shared.definitions.store import DefinitionStore
from shared.definitions.validate import validate_definition
from shared.mongo import CommandCounter, make_client
from shared.outgoing import Outgoing, opened_outbox
from shared.packed import items_of, opened_all
from shared.spine.mongo_marks import SYSTEM

pytestmark = pytest.mark.integration

BENCH = """
name: bench-writes
stages:
  - name: prepare
    steps: [{name: prepare, action: noop}]
  - name: review
    steps:
      - {name: legal, kind: interactive, title: Legal review, assignee: {user: alice}}
      - {name: finance, kind: interactive, title: Finance review, assignee: {user: bob}}
  - name: close
    steps: [{name: close, action: noop}]
"""


class RecordingPublisher:
    def __init__(self) -> None:
        self.sent: list[Envelope] = []

    async def publish(self, envelopes: Iterable[Envelope]) -> None:
        self.sent.extend(envelopes)

    async def send(self, messages: Iterable[Outgoing]) -> None:
        """Messages as stored (decision 35): what a consumer parses of their bytes, handed
        to :meth:`publish` (which tests replace to hold or break the publish)."""
        await self.publish([parse(m.value) for m in messages])


@dataclass
class Coordinator:
    handler: CoordinatorHandler
    publisher: RecordingPublisher
    written: Counter[str]
    db: Any

    @property
    def store(self) -> RunStore:
        return self.handler.store

    async def batch(self, steps: list[tuple[str, Envelope]]) -> None:
        """One batch of the consumer, and what its save left to do (its messages out, its
        history paged)."""
        await self.batch_only(steps)
        await self.store.finished()

    async def batch_only(self, steps: list[tuple[str, Envelope]]) -> None:
        """One batch of the consumer: workitems.events' messages as its intake adapts them."""
        taken = [from_work_items(e) if topic == "feed" else e for topic, e in steps]
        await self.handler([e for e in taken if e is not None])

    def another(self) -> tuple[RunStore, RecordingPublisher]:
        """Another coordinator on the same database (a replica, or this one restarted)."""
        publisher = RecordingPublisher()
        return RunStore(self.db, publisher), publisher  # type: ignore[arg-type]


@pytest.fixture
async def coordinator(servers: Any, database: str) -> AsyncIterator[Coordinator]:
    written: Counter[str] = Counter()
    counter = CommandCounter(lambda name: None,
                             lambda collection, n: written.update({collection: n}))
    client = make_client(servers.mongodb_uri, app_name="coordinator-writes",
                         listeners=[counter])
    db = client[database]
    definitions = DefinitionStore(db)
    definition = validate_definition(load_definition(BENCH, fmt="yaml"),
                                     known_actions=frozenset({"noop"}))
    await definitions.publish(definition, published_by="test", now=datetime.now(UTC))
    publisher = RecordingPublisher()
    handler = CoordinatorHandler(RunStore(db, publisher),  # type: ignore[arg-type]
                                 definitions, publisher,  # type: ignore[arg-type]
                                 CoordinatorMetrics(CollectorRegistry()))
    written.clear()  # what publishing the definition wrote is not the run's
    yield Coordinator(handler, publisher, written, db)
    await client.close()


def inputs(run_id: str) -> list[tuple[str, Envelope]]:
    """The messages of one bench run, in order, with the consumer that takes each."""
    def message(payload: Any) -> Envelope:
        return new_event(payload, producer="test", run_id=run_id)

    def assigned(step: str, user: str) -> Envelope:
        return message(WorkItemAssigned(work_item_id=f"{run_id}:{step}", step=step,
                                        assignee_kind="user", assignee=user))

    return [
        ("commands", message(StartRun(orchestration="bench-writes", requested_by="bench"))),
        ("outcomes", message(StepCompleted(step="prepare", attempt=1))),
        ("feed", assigned("legal", "alice")),
        ("feed", assigned("finance", "bob")),
        ("outcomes", message(StepCompleted(step="legal", attempt=1, completed_by="alice"))),
        ("outcomes", message(StepCompleted(step="finance", attempt=1, completed_by="bob"))),
        ("outcomes", message(StepCompleted(step="close", attempt=1))),
    ]


async def drive(coordinator: Coordinator, steps: list[tuple[str, Envelope]]) -> None:
    """Each message a batch of its own (a run's messages as a steady load brings them)."""
    for step in steps:
        await coordinator.batch([step])


def sent_types(coordinator: Coordinator, topic: str) -> list[str]:
    return [e.type for e in coordinator.publisher.sent if topic == e.payload.TOPIC]


def sent_for(publisher: RecordingPublisher, run_id: str) -> list[str]:
    """The event ids ``publisher`` sent for ``run_id`` (a sweep sees other tests' runs too)."""
    return [e.event_id for e in publisher.sent if e.run_id == run_id]


async def test_a_bench_run_writes_its_five_changes_and_no_clear(
    coordinator: Coordinator,
) -> None:
    run_id = uuid.uuid4().hex
    await drive(coordinator, inputs(run_id))
    run = await coordinator.store.runs.find_one({"_id": run_id})
    assert run is not None and run["status"] == "completed"
    # Five inputs change the run; an assignment naming the person the run dispatched to
    # changes nothing.  No outbox is cleared: the last one stays, stamped by this writer.
    assert coordinator.written[RUNS] == 5
    assert run["outbox_by"] == coordinator.store.outboxes.writer and run["outbox"]
    # The writer's mark: once before its first stamp, then by the job about once a second
    # for all the runs it saved meanwhile (here once, at the end).
    assert coordinator.written[SYSTEM] == 1
    assert await coordinator.store.outboxes.write_mark()
    assert coordinator.written[SYSTEM] == 2
    # One lifecycle message per move (decision 17).
    assert sent_types(coordinator, "runs.events") == [
        "RunStarted", "StageCompleted", "StageCompleted", "RunCompleted"]
    assert sent_types(coordinator, "steps.dispatch") == ["StepRequested", "StepRequested"]
    assert sent_types(coordinator, "workitems.dispatch") == [
        "WorkItemRequested", "WorkItemRequested"]
    assert len(coordinator.publisher.sent) == 8


async def test_the_next_save_replaces_the_paged_history_and_readers_see_each_entry_once(
    coordinator: Coordinator,
) -> None:
    """The run document keeps the history of its last save (paged already) instead of a
    write to drop it; readers merge it with the pages, one entry per revision."""
    run_id = uuid.uuid4().hex
    await drive(coordinator, inputs(run_id))
    run = await coordinator.store.runs.find_one({"_id": run_id})
    assert run is not None
    kept = [e["revision"] for e in opened_all(run["pending_history"])]
    assert kept == list(range(kept[0], run["revision"] + 1)) and kept[0] > 1
    paged = await read_history(coordinator.db[RUN_HISTORY], {"_id": run_id})
    assert [e["revision"] for e in paged] == list(range(1, run["revision"] + 1))
    assert await read_history(coordinator.db[RUN_HISTORY], run) == paged


async def test_a_late_outcome_for_a_finished_run_publishes_and_writes_nothing(
    coordinator: Coordinator,
) -> None:
    """A finished run leaves the cache; read back, the outbox this writer published must
    not be taken for a stop's leftover, mark written or not."""
    run_id = uuid.uuid4().hex
    await drive(coordinator, inputs(run_id))
    assert run_id not in coordinator.store.cache
    sent, written = len(coordinator.publisher.sent), coordinator.written[RUNS]
    again = new_event(StepCompleted(step="finance", attempt=1, completed_by="bob"),
                      producer="assignment", run_id=run_id)  # answered again: a new id
    await coordinator.handler([again])
    await coordinator.store.finished()
    assert len(coordinator.publisher.sent) == sent
    assert coordinator.written[RUNS] == written


async def test_a_stop_after_the_save_before_the_publish_is_sent_once_by_another_coordinator(
    coordinator: Coordinator, monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_id = uuid.uuid4().hex
    steps = inputs(run_id)
    await drive(coordinator, steps[:-1])
    await coordinator.store.outboxes.write_mark()  # all so far went out

    async def stopped(_: Any) -> None:
        raise ConnectionError("the process stopped here")
    # The stop comes after the save, before the page and the publish (which go at once).
    monkeypatch.setattr(coordinator.store, "_page", stopped)
    monkeypatch.setattr(coordinator.store.publisher, "publish", stopped)
    with pytest.raises(ConnectionError):
        await drive(coordinator, steps[-1:])  # saved; stopped before paging and publishing
    run = await coordinator.store.runs.find_one({"_id": run_id})
    assert run is not None and run["status"] == "completed" and run["outbox"]
    left = [parse(m.value).event_id for m in opened_outbox(run["outbox"])]
    assert not set(left) & set(sent_for(coordinator.publisher, run_id))

    other, sent = coordinator.another()
    await other.outboxes.sweep(timedelta(minutes=10))
    assert sent_for(sent, run_id) == []  # not before the sweep's age
    await other.outboxes.sweep(timedelta(0))
    assert sent_for(sent, run_id) == left  # RunCompleted, once
    await other.outboxes.sweep(timedelta(0))
    assert sent_for(sent, run_id) == left
    # The history the stop left unpaged went with it.
    paged = await read_history(coordinator.db[RUN_HISTORY], {"_id": run_id})
    assert [e["revision"] for e in paged] == list(range(1, run["revision"] + 1))


async def test_a_stop_after_the_publish_before_the_mark_is_sent_again_with_the_same_ids(
    coordinator: Coordinator,
) -> None:
    run_id = uuid.uuid4().hex
    await drive(coordinator, inputs(run_id))  # published; the mark job never ran
    published = sent_for(coordinator.publisher, run_id)
    other, sent = coordinator.another()
    await other.outboxes.sweep(timedelta(0))
    again = sent_for(sent, run_id)
    assert again and set(again) <= set(published)  # the last outbox, a duplicate by id


async def test_an_outbox_the_mark_covers_is_neither_swept_nor_read_as_left(
    coordinator: Coordinator,
) -> None:
    run_id = uuid.uuid4().hex
    steps = inputs(run_id)
    await drive(coordinator, steps[:-1])
    assert await coordinator.store.outboxes.write_mark()
    other, sent = coordinator.another()
    await other.outboxes.sweep(timedelta(0))
    assert sent_for(sent, run_id) == []
    loaded = (await other.load([run_id]))[run_id]
    assert loaded.outbox == [] and loaded.unpaged_history == []


def item_event(payload: Any, run_id: str) -> tuple[str, Envelope]:
    return "feed", new_event(payload, producer="assignment", run_id=run_id)


async def test_a_cached_run_keeps_the_last_applied_ids_as_its_document_does(
    coordinator: Coordinator,
) -> None:
    """A run that waits long in the cache takes many messages: the cache keeps the ids of
    the last APPLIED_KEPT applied, as the document does, not every id it ever applied; the
    newest are still recognised as repeats."""
    run_id = uuid.uuid4().hex
    await drive(coordinator, inputs(run_id)[:2])  # in review, cached
    more = APPLIED_KEPT + 30
    delegations = [item_event(WorkItemDelegated(
        work_item_id=f"{run_id}:legal", step="legal", assignee_kind="user",
        assignee="alice", delegate=f"person-{n}"), run_id) for n in range(more)]
    await coordinator.batch(delegations)  # each names someone new: each is applied

    cached = coordinator.store.cache[run_id]
    ids = [e.event_id for _, e in delegations]
    assert cached.applied == ids[-APPLIED_KEPT:]
    doc = await coordinator.store.runs.find_one({"_id": run_id})
    assert doc is not None and unpacked(doc)["applied"] == cached.applied
    written = coordinator.written[RUNS]
    await coordinator.batch(delegations[-1:])  # a redelivery of the newest
    assert coordinator.written[RUNS] == written
    assert coordinator.store.cache[run_id].applied == ids[-APPLIED_KEPT:]


async def test_a_runs_messages_from_outcomes_and_work_items_in_one_batch_are_one_write(
    coordinator: Coordinator,
) -> None:
    """One consumer over the three topics (decision 20): a delegation (who takes part), one
    review's completion (a work-item event) and the other's outcome (steps.outcomes) of one
    run land in one batch, which loads the run once and saves it once."""
    run_id = uuid.uuid4().hex
    await drive(coordinator, inputs(run_id)[:2])  # started; both reviews requested
    coordinator.store.cache.clear()  # as after a restart: the batch reads the run
    trips, written = coordinator.store.round_trips, coordinator.written[RUNS]
    together = [
        item_event(WorkItemDelegated(work_item_id=f"{run_id}:legal", step="legal",
                                     assignee_kind="user", assignee="alice",
                                     delegate="carol"), run_id),
        item_event(WorkItemCompleted(work_item_id=f"{run_id}:legal", step="legal",
                                     actor="carol", attempt=1), run_id),
        ("outcomes", new_event(StepCompleted(step="finance", attempt=1, completed_by="bob"),
                               producer="test", run_id=run_id)),
    ]
    await coordinator.batch(together)

    assert coordinator.written[RUNS] - written == 1
    assert coordinator.store.round_trips - trips == 3  # load, save, history page
    run = await coordinator.store.runs.find_one({"_id": run_id})
    assert run is not None and run["stage"] == "close"
    assert {"user:carol", "user:alice", "user:bob"} <= set(run["participants"])
    assert unpacked(run)["applied"][-3:] == [e.event_id for _, e in together]

    # Read again (a stop before the offsets were committed): every one a repeat by id,
    # the completion too (its outcome keeps the work-item event's id).
    coordinator.store.cache.clear()
    sent, written = len(coordinator.publisher.sent), coordinator.written[RUNS]
    await coordinator.batch(together)
    assert coordinator.written[RUNS] == written
    assert len(coordinator.publisher.sent) == sent
    await drive(coordinator, inputs(run_id)[-1:])
    done = await coordinator.store.runs.find_one({"_id": run_id})
    assert done is not None and done["status"] == "completed"


async def test_the_next_batch_is_decided_while_the_last_goes_out_and_saved_after_it(
    coordinator: Coordinator, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Decision 26: a batch's save returns once written; its messages go out while the
    next batch is decided, and the next save waits for them, so a run's messages keep
    their order."""
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    gate = asyncio.Event()
    record = coordinator.publisher.publish

    async def held(envelopes: Iterable[Envelope]) -> None:
        envelopes = list(envelopes)
        await gate.wait()
        await record(envelopes)
    monkeypatch.setattr(coordinator.publisher, "publish", held)

    await coordinator.handler([inputs(first)[0][1]])  # returns: written, not published
    assert await coordinator.store.runs.count_documents({"_id": first}) == 1
    assert sent_for(coordinator.publisher, first) == []
    following = asyncio.create_task(coordinator.handler(
        [inputs(second)[0][1], inputs(first)[1][1]]))
    for _ in range(20):  # decided, then waiting for the first batch's messages
        await asyncio.sleep(0.05)
    assert not following.done()
    assert await coordinator.store.runs.count_documents({"_id": second}) == 0

    gate.set()
    await following
    await coordinator.store.finished()
    sent = [e.type for e in coordinator.publisher.sent if e.run_id == first]
    assert sent[:2] == ["RunStarted", "StepRequested"]  # the first batch's, first
    assert "StageCompleted" in sent[2:] and "WorkItemRequested" in sent[2:]
    assert sent_for(coordinator.publisher, second)


async def test_a_failed_publish_is_raised_to_the_next_save_and_sent_again_on_reading(
    coordinator: Coordinator, monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_id = uuid.uuid4().hex
    steps = inputs(run_id)
    await drive(coordinator, steps[:1])
    before = len(sent_for(coordinator.publisher, run_id))
    record = coordinator.publisher.publish

    async def broken(_: Any) -> None:
        raise ConnectionError("Kafka is away")
    monkeypatch.setattr(coordinator.publisher, "publish", broken)
    await coordinator.batch_only([steps[1]])  # saved; its messages fail in the background
    other = uuid.uuid4().hex
    with pytest.raises(ConnectionError):  # the next save hears of it, and is not written
        await coordinator.batch_only(inputs(other)[:1])
    monkeypatch.setattr(coordinator.publisher, "publish", record)
    assert await coordinator.store.runs.count_documents({"_id": other}) == 0
    assert run_id not in coordinator.store.cache  # read back next time

    left = await coordinator.store.runs.find_one({"_id": run_id})
    assert left is not None and left["outbox"]
    unsent = [parse(m.value).event_id for m in opened_outbox(left["outbox"])]
    assert not set(unsent) & set(sent_for(coordinator.publisher, run_id))
    await drive(coordinator, steps[2:])  # the batch again: what was left goes out first
    sent = sent_for(coordinator.publisher, run_id)
    assert sent[before:before + len(unsent)] == unsent  # next after the first batch's
    done = await coordinator.store.runs.find_one({"_id": run_id})
    assert done is not None and done["status"] == "completed"


async def test_a_batch_is_saved_in_parts_while_the_rest_is_decided(
    coordinator: Coordinator, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Decision 29: every ``save_every`` runs go to the store in a task and the batch's
    next runs are decided meanwhile; the parts are written one after the other, in order,
    and the batch returns once the last is."""
    coordinator.handler.save_every = 2
    runs = [uuid.uuid4().hex for _ in range(5)]
    decided: list[str] = []
    writes: list[list[str]] = []
    gate = asyncio.Event()
    apply, write = coordinator.handler._apply, coordinator.store._write

    async def counted(run_id: str, *rest: Any) -> Any:
        decided.append(run_id)
        return await apply(run_id, *rest)

    async def held(changed: list[Any], stamp: Any) -> set[str]:
        writes.append([stored.run.id for stored in changed])
        if len(writes) == 1:
            await gate.wait()
        return await write(changed, stamp)
    monkeypatch.setattr(coordinator.handler, "_apply", counted)
    monkeypatch.setattr(coordinator.store, "_write", held)

    batch = asyncio.create_task(coordinator.handler([inputs(r)[0][1] for r in runs]))

    async def all_decided() -> bool:
        return len(decided) == len(runs)
    await wait_for(all_decided, timeout=60)  # the first part held in the store meanwhile
    assert decided == runs
    assert writes == [runs[:2]] and not batch.done()
    assert await coordinator.store.runs.count_documents({"_id": {"$in": runs}}) == 0

    gate.set()
    await batch
    assert writes == [runs[:2], runs[2:4], runs[4:]]
    assert await coordinator.store.runs.count_documents({"_id": {"$in": runs}}) == 5
    await coordinator.store.finished()
    assert all(sent_for(coordinator.publisher, r) for r in runs)


async def test_a_failed_part_fails_its_batch_and_the_batch_read_again_writes_the_rest(
    coordinator: Coordinator, monkeypatch: pytest.MonkeyPatch,
) -> None:
    coordinator.handler.save_every = 2
    runs = [uuid.uuid4().hex for _ in range(5)]
    batch = [inputs(r)[0][1] for r in runs]
    write = coordinator.store._write
    calls: list[int] = []

    async def second_fails(changed: list[Any], stamp: Any) -> set[str]:
        calls.append(len(changed))
        if len(calls) == 2:
            raise ConnectionError("MongoDB is away")
        return await write(changed, stamp)
    monkeypatch.setattr(coordinator.store, "_write", second_fails)
    with pytest.raises(ConnectionError):
        await coordinator.handler(batch)
    assert calls == [2, 2]  # the part after the failed one is not written
    written = {d["_id"] async for d in coordinator.store.runs.find({"_id": {"$in": runs}})}
    assert written == set(runs[:2])

    monkeypatch.setattr(coordinator.store, "_write", write)
    before = coordinator.written[RUNS]
    await coordinator.batch_only([("commands", e) for e in batch])  # the batch read again
    assert coordinator.written[RUNS] - before == 3  # the first part's are repeats
    assert await coordinator.store.runs.count_documents({"_id": {"$in": runs}}) == 5


async def test_a_save_of_other_runs_does_not_wait_for_messages_on_their_way(
    coordinator: Coordinator, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Decision 29: only a save of the same run waits for the last one's messages."""
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    gate = asyncio.Event()
    record = coordinator.publisher.publish
    held_runs: set[str | None] = set()

    async def held(envelopes: Iterable[Envelope]) -> None:
        envelopes = list(envelopes)
        if any(e.run_id == first for e in envelopes):
            held_runs.update(e.run_id for e in envelopes)
            await gate.wait()
        await record(envelopes)
    monkeypatch.setattr(coordinator.publisher, "publish", held)

    await coordinator.handler([inputs(first)[0][1]])  # written; its messages held
    await coordinator.handler([inputs(second)[0][1]])  # another run: saved at once
    assert await coordinator.store.runs.count_documents({"_id": second}) == 1

    async def second_sent() -> bool:
        return bool(sent_for(coordinator.publisher, second))
    await wait_for(second_sent, timeout=60)  # while the first run's messages are held
    assert held_runs == {first} and not sent_for(coordinator.publisher, first)

    same = asyncio.create_task(coordinator.handler([inputs(first)[1][1]]))
    for _ in range(20):  # the same run: waits for its messages
        await asyncio.sleep(0.02)
    assert not same.done()
    gate.set()
    await same
    await coordinator.store.finished()
    sent = [e.type for e in coordinator.publisher.sent if e.run_id == first]
    assert sent[:2] == ["RunStarted", "StepRequested"] and "StageCompleted" in sent[2:]


async def test_a_run_document_holds_its_outbox_history_and_dispatches_packed(
    coordinator: Coordinator,
) -> None:
    """Decisions 27 and 35: one binary value each (the outbox and the pending history one
    value for the whole list), which the store never looks into, and the run's state
    besides what queries use; documents written before, with lists of packed values, or
    subdocuments and fields, are read the same way."""
    run_id = uuid.uuid4().hex
    await drive(coordinator, inputs(run_id)[:2])  # in review: two dispatches out
    doc = await coordinator.store.runs.find_one({"_id": run_id})
    assert doc is not None
    values = [doc["outbox"], doc["pending_history"], doc["state"],
              *(a["dispatch"] for a in doc["active_steps"])]
    assert len(values) == 5 and all(isinstance(v, bytes) for v in values)
    assert not {"steps", "stages", "record", "applied"} & set(doc)  # all in ``state``

    # As the version before wrote it: a list of packed envelopes and entries, each
    # dispatch the packed envelope; and before packing: subdocuments and fields.
    envelopes = [parse(m.value).model_dump(mode="json") for m in opened_outbox(doc["outbox"])]
    dispatches = [parse(dispatched(a["dispatch"]).value).model_dump(mode="json")
                  for a in doc["active_steps"]]
    packed_lists = {**doc, "outbox": [bson.encode(m) for m in envelopes],
                    "pending_history": items_of(doc["pending_history"]),
                    "active_steps": [{**a, "dispatch": bson.encode(d)}
                                     for a, d in zip(doc["active_steps"], dispatches,
                                                     strict=True)]}
    subdocuments = {**unpacked(doc), "outbox": envelopes,
                    "pending_history": opened_all(doc["pending_history"]),
                    "active_steps": [{**a, "dispatch": d}
                                     for a, d in zip(doc["active_steps"], dispatches,
                                                     strict=True)]}
    assert "state" not in subdocuments
    assert subdocuments["steps"]["legal"]["status"] == "in_progress"
    now = from_document(doc)
    assert {m.type for m in now.outbox} >= {"WorkItemRequested"}
    assert len(now.dispatches) == 2
    assert from_document(packed_lists).unpaged_packed == items_of(doc["pending_history"])
    for a, d in zip(doc["active_steps"], dispatches, strict=True):  # what a reconcile sends
        assert dispatched(bson.encode(d)) == dispatched(d) == dispatched(a["dispatch"])
    for legacy in (packed_lists, subdocuments):
        before = from_document(legacy)
        assert now.run == before.run and now.applied == before.applied
        assert len(now.applied) == 2
        assert now.outbox == before.outbox and now.unpaged_history == before.unpaged_history
        assert now.dispatches == before.dispatches  # read again as this version packs them
        assert to_document(before)["outbox"] == doc["outbox"]  # written again the same
    entry = now.unpaged_history[-1]
    assert entry["run_id"] == run_id and entry["at"].tzinfo is not None  # times stay aware


async def test_a_save_over_a_run_another_writer_moved_on_is_a_conflict_and_changes_nothing(
    coordinator: Coordinator,
) -> None:
    """Decision 31: the guard is in the replacement, not the filter; a lost race is still
    refused, whole, and the batch is read again from the store."""
    run_id = uuid.uuid4().hex
    await drive(coordinator, inputs(run_id)[:2])
    other, _ = coordinator.another()
    theirs = (await other.load([run_id]))[run_id]
    theirs.run = theirs.run.model_copy(update={"revision": theirs.run.revision + 1})
    await other.save([theirs])  # another writer moves the run on
    before = await coordinator.store.runs.find_one({"_id": run_id})
    with pytest.raises(WriteConflict, match="1 run writes failed"):
        await coordinator.batch_only([inputs(run_id)[4]])  # on the cached, stale run
    assert await coordinator.store.runs.find_one({"_id": run_id}) == before
    assert run_id not in coordinator.store.cache  # the next batch reads it again


async def test_a_timer_lease_stays_while_the_timers_are_as_read_and_goes_with_them(
    coordinator: Coordinator,
) -> None:
    """The replacement carries over what other writers set: a timer's lease (and the
    history of runs written before it was paged)."""
    run_id = uuid.uuid4().hex
    await drive(coordinator, inputs(run_id)[:2])
    lease = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)
    await coordinator.store.runs.update_one(
        {"_id": run_id}, {"$set": {"timer_lease_until": lease, "history": [{"old": 1}]}})
    await coordinator.batch([inputs(run_id)[4]])  # changes no timer: the lease stays
    doc = await coordinator.store.runs.find_one({"_id": run_id})
    assert doc is not None and doc["timer_lease_until"] == lease
    assert doc["history"] == [{"old": 1}]
    stored = coordinator.store.cache[run_id]
    stored.timer_due = lease  # as if a timer had been due when the run was read
    await coordinator.batch([inputs(run_id)[5]])
    doc = await coordinator.store.runs.find_one({"_id": run_id})
    assert doc is not None and "timer_lease_until" not in doc
    assert doc["history"] == [{"old": 1}]


async def test_a_page_takes_the_entries_as_the_save_packed_them(
    coordinator: Coordinator, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each history entry is encoded once: into the run's pending_history by its save, and
    the page takes those bytes (decision 27)."""
    import services.stage_coordinator.history as history

    encoded: list[dict[str, Any]] = []

    def counting(entry: dict[str, Any]) -> bytes:
        encoded.append(entry)
        return bson.encode(entry)

    monkeypatch.setattr(history, "packed", counting)
    run_id = uuid.uuid4().hex
    await drive(coordinator, inputs(run_id)[:2])
    run = await coordinator.store.runs.find_one({"_id": run_id})
    assert run is not None and run["pending_history"]
    pages = await coordinator.db[RUN_HISTORY].find({"run_ids": run_id}).to_list(None)
    assert items_of(run["pending_history"])[-1] in pages[-1]["entries"]  # the same bytes
    assert encoded == []  # none packed again for its page
