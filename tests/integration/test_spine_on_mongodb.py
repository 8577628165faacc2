"""The spine on the real embedded MongoDB: conflicts name the aggregates that lost, and what
the Work Guide and the dispatch consumer cost, counted as MongoDB commands (round trips)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import bson
import pytest
from prometheus_client import CollectorRegistry
from recorders import Recorder

from contracts import parse
from contracts.envelope import new_event
from contracts.events.workitems import AssigneeSpec, WorkItemRequested
from services.assignment.core import commands as cmd
from services.assignment.directory_store import DirectoryStore
from services.assignment.guide import WorkGuide
from services.assignment.handler import DispatchHandler
from services.assignment.lookup import held_by
from services.assignment.store import PACKING, WorkItemStore, item_of
from shared.messaging import Publisher, make_broker
from shared.metrics import ServiceMetrics
from shared.mongo import CommandCounter, make_client
from shared.outgoing import opened_outbox
from shared.packed import opened
from shared.settings import ServiceSettings
from shared.spine import Aggregate, Conflict, Decided
from shared.spine.aggregate import aggregate_of
from shared.spine.stamp_keys import stamp_key
from shared.topics import ensure_topics, topics_of

pytestmark = pytest.mark.integration

DIRECTORY = {"users": [{"id": "ann"}, {"id": "bo"}],
             "queues": [{"id": "desk", "members": ["ann", "bo"]}]}


@pytest.fixture(scope="module")
async def parts(servers: Any, database: str) -> AsyncIterator[dict[str, Any]]:
    settings = ServiceSettings(service_name="spine-it", kafka_bootstrap=servers.kafka_bootstrap,
                               mongodb_uri=servers.mongodb_uri, mongodb_database=database)
    metrics = ServiceMetrics(CollectorRegistry(), "spine-it")
    # The topics the assignment service publishes to (its start-up would create them).
    await ensure_topics(servers.kafka_bootstrap, topics_of("assignment"))
    broker = make_broker(settings)
    await broker.connect()
    commands: Counter[str] = Counter()
    client = make_client(servers.mongodb_uri, app_name="spine-it",
                         listeners=[CommandCounter(lambda name: commands.update([name]))])
    db = client[database]
    directory = DirectoryStore(db)
    await directory.load(DIRECTORY)
    store = WorkItemStore(db, Publisher(broker, metrics), metrics)
    await store.spine.write_mark(again=True)  # once per process, before its first outbox
    yield {"store": store, "guide": WorkGuide(store, directory), "commands": commands,
           "handler": DispatchHandler(store, directory), "directory": directory}
    await broker.stop()
    await client.close()


def dispatch(run_id: str, kind: str = "user", value: str = "ann", **extra: Any) -> Any:
    request = WorkItemRequested(orchestration="it", version=1, stage="s", step="do", attempt=1,
                                kind="interactive", title="Do it",
                                assignee=AssigneeSpec(kind=kind, value=value), **extra)
    return new_event(request, producer="test", run_id=run_id)


async def counted(parts: dict[str, Any], work: Any) -> tuple[Any, Counter[str]]:
    await parts["directory"].current()  # the directory is cached: not part of the path
    parts["commands"].clear()
    result = await work
    return result, Counter(parts["commands"])


async def test_a_save_names_the_new_and_the_changed_aggregates_that_lost(
        parts: dict[str, Any]) -> None:
    spine = parts["store"].spine
    old, new, fine = (f"spine-{uuid.uuid4().hex}" for _ in range(3))
    await spine.save([Aggregate(old).after(Decided(state={"n": 0}))])
    read = (await spine.load([old]))[old]
    await spine.save([read.after(Decided(state={"n": 1}))])  # another writer moves it on
    await spine.save([Aggregate(new).after(Decided(state={"n": 1}))])  # and creates this one
    late = [read.after(Decided(state={"n": 2})), Aggregate(new).after(Decided(state={"n": 2})),
            Aggregate(fine).after(Decided(state={"n": 2}))]
    parts["commands"].clear()
    with pytest.raises(Conflict) as raised:
        await spine.save(late)
    assert sorted(raised.value.keys) == sorted([old, new])
    # One bulk write told which lost: its insert (the new aggregates) and its update.
    assert parts["commands"] == {"insert": 1, "update": 1}
    stored = await spine.load([old, new, fine])
    assert [(stored[k].state or {})["n"] for k in (old, new, fine)] == [1, 1, 2]


async def test_concurrent_completions_cost_one_find_and_one_write(parts: dict[str, Any]) -> None:
    runs = [uuid.uuid4().hex for _ in range(20)]
    _, opening = await counted(parts, parts["handler"]([dispatch(run) for run in runs]))
    assert opening == {"find": 1, "insert": 1}  # a batch of 20 dispatches: one find, one write
    guide, directory = parts["guide"], await parts["directory"].current()
    outcomes, completing = await counted(parts, asyncio.gather(*(
        guide.act(f"{run}:do:1", cmd.Complete("ann", {}), directory) for run in runs)))
    assert all(o.rejection is None for o in outcomes)
    # Decided on the items as this process wrote them (decision 34): no find.
    assert completing == {"update": 1}


async def test_completing_one_item_costs_one_round_trip_here_and_two_elsewhere(
        parts: dict[str, Any]) -> None:
    runs = [uuid.uuid4().hex for _ in range(3)]
    await parts["handler"]([dispatch(run) for run in runs])
    guide, directory = parts["guide"], await parts["directory"].current()
    outcome, commands = await counted(
        parts, guide.act(f"{runs[0]}:do:1", cmd.Complete("ann", {}), directory))
    assert outcome.rejection is None and outcome.item.status == "completed"
    assert commands == {"update": 1}
    other = WorkGuide(WorkItemStore(parts["store"].items.database, parts["store"].spine.publisher,
                                    parts["store"].spine.metrics), parts["directory"])
    # Its first change writes its mark and reads the others' (then about once a second).
    await counted(parts, other.act(f"{runs[2]}:do:1", cmd.Comment("ann", "x"), directory))
    outcome, commands = await counted(
        parts, other.act(f"{runs[1]}:do:1", cmd.Complete("ann", {}), directory))
    assert outcome.rejection is None and outcome.item.status == "completed"
    assert commands == {"find": 1, "update": 1}  # another replica reads it first


async def test_racing_claims_lose_once_and_are_decided_again(parts: dict[str, Any]) -> None:
    """Two replicas (two guides on one collection) claim one item: one claimer."""
    run_id = uuid.uuid4().hex
    await parts["handler"]([dispatch(run_id, "queue", "desk")])
    other = WorkGuide(WorkItemStore(parts["store"].items.database, parts["store"].spine.publisher,
                                    parts["store"].spine.metrics), parts["directory"])
    directory = await parts["directory"].current()
    item_id = f"{run_id}:do:1"
    outcomes = await asyncio.gather(parts["guide"].act(item_id, cmd.Claim("ann"), directory),
                                    other.act(item_id, cmd.Claim("bo"), directory))
    assert sorted(o.rejection is None for o in outcomes) == [False, True]
    stored = await parts["store"].get(item_id)
    assert stored is not None and stored["claimed_by"] in ("ann", "bo")
    assert stored["revision"] == 2


async def test_a_timer_is_leased_to_one_claimer(parts: dict[str, Any]) -> None:
    spine = parts["store"].spine
    key, now = f"spine-{uuid.uuid4().hex}", datetime.now(UTC)
    timer = {"purpose": "reminder", "due_at": now - timedelta(hours=1), "epoch": 0}
    await spine.save([Aggregate(key).after(Decided(state={"n": 0}, timers=[timer]))])
    due = [entry for entry in await spine.due(now, 500) if entry[0] == key]
    assert len(due) == 1
    lease = now + timedelta(seconds=30)
    assert await spine.claim(due, lease) == [key]
    assert await spine.claim(due, lease) == []  # a second claimer finds it leased
    assert [e for e in await spine.due(now, 500) if e[0] == key] == []


async def test_items_opened_and_completed_write_two_documents_each_and_nothing_again(
        parts: dict[str, Any], servers: Any, database: str) -> None:
    """No clear write per published outbox: the writer's mark, once per save burst."""
    written: Counter[str] = Counter()
    client = make_client(servers.mongodb_uri, app_name="spine-written", listeners=[
        CommandCounter(lambda name: None, lambda coll, n: written.update({coll: n}))])
    try:
        db, metrics = client[database], parts["store"].spine.metrics
        store = WorkItemStore(db, parts["store"].spine.publisher, metrics)
        guide, directory = WorkGuide(store, parts["directory"]), parts["directory"]
        runs = [uuid.uuid4().hex for _ in range(10)]
        await DispatchHandler(store, directory)([dispatch(run) for run in runs])
        current = await directory.current()
        outcomes = await asyncio.gather(*(
            guide.act(f"{run}:do:1", cmd.Complete("ann", {}), current) for run in runs))
        assert all(o.rejection is None for o in outcomes)
        assert await store.spine.write_mark()
        assert written == {"work_items": 20, "system": 2}  # 2 per item; 2 marks in all
        other = Recorder()
        sweeper = WorkItemStore(db, other, metrics)  # type: ignore[arg-type]
        await sweeper.spine.sweep(timedelta(0))
        assert [e for e in other.sent if e.run_id in runs] == []
    finally:
        await client.close()


async def test_an_outbox_a_crash_left_unpublished_is_sent_once_by_another_store(
        parts: dict[str, Any]) -> None:
    db, metrics = parts["store"].items.database, parts["store"].spine.metrics
    crashed = WorkItemStore(db, Recorder(broken=True), metrics)  # type: ignore[arg-type]
    run_id = uuid.uuid4().hex
    with pytest.raises(ConnectionError):
        await DispatchHandler(crashed, parts["directory"])([dispatch(run_id)])
    stored = await parts["store"].items.find_one({"_id": f"{run_id}:do:1"})
    assert stored is not None and stored["outbox_by"] == crashed.spine.ledger.writer
    # Kept as sent, one BSON value for the whole outbox (decision 35).
    assert isinstance(stored["outbox"], bytes)
    assert [m.type for m in opened_outbox(stored["outbox"])] == ["WorkItemAssigned"]
    await asyncio.sleep(0.01)  # the stamp is in the past now (it may lead the clock by 1 ms)
    restarted = Recorder()
    sweeper = WorkItemStore(db, restarted, metrics)  # type: ignore[arg-type]
    await sweeper.spine.sweep(timedelta(0))
    await sweeper.spine.sweep(timedelta(0))
    assert [e.type for e in restarted.sent if e.run_id == run_id] == ["WorkItemAssigned"]


@pytest.mark.parametrize("packed_each", [True, False])
async def test_an_outbox_written_by_an_earlier_version_is_read_and_sent_the_same(
        parts: dict[str, Any], packed_each: bool) -> None:
    """Documents written by earlier versions hold their outbox as a list of envelopes,
    each packed (decision 27) or, before, a subdocument."""
    db, metrics = parts["store"].items.database, parts["store"].spine.metrics
    crashed = WorkItemStore(db, Recorder(broken=True), metrics)  # type: ignore[arg-type]
    run_id = uuid.uuid4().hex
    key = f"{run_id}:do:1"
    with pytest.raises(ConnectionError):
        await DispatchHandler(crashed, parts["directory"])([dispatch(run_id)])
    items = parts["store"].items
    stored = await items.find_one({"_id": key})
    assert stored is not None
    sent = opened_outbox(stored["outbox"])
    envelopes = [parse(m.value).model_dump(mode="json") for m in sent]
    await items.update_one({"_id": key}, {"$set": {"outbox": [
        bson.encode(m) if packed_each else m for m in envelopes]}})
    before = await items.find_one({"_id": key})
    assert before is not None
    assert isinstance(before["outbox"][0], bytes if packed_each else dict)
    assert list(aggregate_of(before).outbox) == sent  # the same bytes to send
    await asyncio.sleep(0.01)
    restarted = Recorder()
    sweeper = WorkItemStore(db, restarted, metrics)  # type: ignore[arg-type]
    await sweeper.spine.sweep(timedelta(0))
    assert [e.type for e in restarted.sent if e.run_id == run_id] == ["WorkItemAssigned"]


RECORD = {"customer": {"name": "Ada", "tags": ["a", "b"]}, "amount": 12.5}


async def test_a_work_item_keeps_what_no_query_names_in_one_binary_value(
        parts: dict[str, Any]) -> None:
    """Decision 32: the server gets the fields it finds, sorts and counts by, plain, and
    the rest (history, record, context...) as one BSON value it never decodes."""
    run_id = uuid.uuid4().hex
    await parts["handler"]([dispatch(run_id, "queue", "desk", record=RECORD,
                                     context={"vars": {"n": 1}, "inputs": {}})])
    key = f"{run_id}:do:1"
    raw = await parts["store"].items.find_one({"_id": key})
    assert raw is not None and isinstance(raw["state"], bytes)
    assert not {"history", "record", "context", "applied", "title"} & set(raw)
    assert raw["lookup"] == [f"run:{run_id}", "open:*", "open:queue:desk",
                             stamp_key(raw["outbox_by"], raw["outbox_at"])]  # decision 37
    assert (raw["status"], raw["assignee_kind"], raw["assignee"]) == ("open", "queue", "desk")
    assert opened(raw["state"])["record"] == RECORD
    item = await parts["guide"].view(key)
    assert item is not None and item.record == RECORD and item.title == "Do it"
    assert item.history and item.history[0].action == "open"


async def test_a_work_item_written_before_packing_is_read_found_and_acted_on(
        parts: dict[str, Any]) -> None:
    """Documents an earlier version wrote hold every field in place: read the same, found
    by the same lists, and packed by their next write."""
    run_id = uuid.uuid4().hex
    await parts["handler"]([dispatch(run_id, "queue", "desk", record=RECORD)])
    key, items, store = f"{run_id}:do:1", parts["store"].items, parts["store"]
    packed_item = await parts["guide"].view(key)
    raw = await items.find_one({"_id": key})
    assert raw is not None
    await items.replace_one({"_id": key}, PACKING.open(raw))
    before = await items.find_one({"_id": key})
    assert before is not None and "state" not in before and before["record"] == RECORD
    assert await parts["guide"].view(key) == packed_item
    listed = await store.find(held_by(["queue:desk"], ["open"]), ["history"],
                              [("created_at", 1)], 500)
    found = [item_of(d) for d in listed if d["_id"] == key]
    assert found == [packed_item.model_copy(update={"history": ()})]  # type: ignore[union-attr]

    directory = await parts["directory"].current()
    claimed = await parts["guide"].act(key, cmd.Claim("bo"), directory)
    assert claimed.rejection is None
    after = await items.find_one({"_id": key})
    assert after is not None and isinstance(after["state"], bytes) and "record" not in after
    item = await parts["guide"].view(key)
    assert item is not None and item.claimed_by == "bo" and item.record == RECORD
    assert packed_item is not None
    kept = len(packed_item.history)
    assert item.history[:kept] == packed_item.history and item.history[-1].action == "claim"


async def test_a_list_by_a_packed_field_is_refused(parts: dict[str, Any]) -> None:
    """The server would find nothing (it cannot look inside the packed value)."""
    with pytest.raises(ValueError, match="packed fields"):
        await parts["store"].find({"title": "Do it"}, [], [("created_at", 1)], 10)
    with pytest.raises(ValueError, match="packed fields"):
        await parts["store"].find(held_by(["user:ann"], ["open"]), [], [("title", 1)], 10)
