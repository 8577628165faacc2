"""Outbox stamps found by their keys in ``lookup`` on the real MongoDB (decision 37): the
sweep's reads give what a filter on the stamps gives; a collection an older version wrote
(the ``(outbox_by, outbox_at)`` index, no keys, ``active_key`` on every active run) is keyed
at start-up, its leftovers swept, its active runs found, and the old index is gone."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry
from recorders import Recorder

from contracts import Envelope, parse
from contracts.envelope import new_event
from contracts.events.commands import StartRun
from contracts.events.steps import StepCompleted
from contracts.events.workitems import AssigneeSpec, WorkItemRequested
from services.assignment.directory_store import DirectoryStore
from services.assignment.handler import DispatchHandler
from services.assignment.store import INDEXES as ITEM_INDEXES
from services.assignment.store import WorkItemStore
from services.stage_coordinator import listing
from services.stage_coordinator.handler import CoordinatorHandler
from services.stage_coordinator.history import RUN_HISTORY
from services.stage_coordinator.metrics import CoordinatorMetrics
from services.stage_coordinator.store import ACTIVE_RUNS, RunStore
from services.stage_coordinator.store import INDEXES as RUN_INDEXES
from shared.definitions.loading import load_definition
from shared.definitions.store import DefinitionStore
from shared.definitions.validate import validate_definition
from shared.metrics import ServiceMetrics
from shared.mongo import Index, ensure_indexes, make_client
from shared.outgoing import opened_outbox
from shared.spine.mongo_marks import OLD_OUTBOX_INDEX, SYSTEM, MongoMarks
from shared.spine.stamp_keys import PREFIX, stamp_key, with_stamp_key

pytestmark = pytest.mark.integration

DEFINITION = """
name: stamp-keys
stages:
  - name: first
    steps: [{name: one, action: noop}]
  - name: second
    steps: [{name: two, action: noop}]
"""
OLD_INDEX = [("outbox_by", 1), ("outbox_at", 1)]


@pytest.fixture
async def db(servers: Any) -> AsyncIterator[Any]:
    """A database of its own: the start-ups here drop indexes."""
    client = make_client(servers.mongodb_uri, app_name="stamp-keys")
    yield client[f"baton_test_{uuid.uuid4().hex[:10]}"]
    await client.close()


async def test_the_sweeps_reads_by_key_give_what_the_stamps_say(db: Any) -> None:
    probe = db["probe"]
    await ensure_indexes(db, [Index("probe", [("lookup", 1)])])
    rng = random.Random(37)
    start = datetime(2026, 12, 1, 10, tzinfo=UTC)
    docs = []
    for i in range(400):  # two writers over 20 minutes, and some never stamped
        writer = rng.choice(["a", "b", None])
        stamp = start + timedelta(milliseconds=rng.randrange(1_200_000)) if writer else None
        doc = {"_id": f"d{i}", "revision": 1, "outbox": b"x",
               "lookup": with_stamp_key([f"run:r{i}"], writer, stamp)}
        if stamp is not None:
            doc.update(outbox_by=writer, outbox_at=stamp)
        docs.append(doc)
    await probe.insert_many(docs)
    marks = MongoMarks(probe, db[SYSTEM], "lookup")
    for _ in range(30):
        writer = rng.choice(["a", "b"])
        after = start + timedelta(milliseconds=rng.randrange(-60_000, 1_300_000))
        until = after + timedelta(milliseconds=rng.randrange(0, 600_000))
        found = {d["_id"] for d in await marks.stamped(writer, after, until)}
        assert found == {d["_id"] for d in docs if d.get("outbox_by") == writer
                         and after < d["outbox_at"] <= until}
    stamps = [d["outbox_at"] for d in docs if d.get("outbox_by") == "a"][:25]
    found = {d["_id"] for d in await marks.stamped_at("a", stamps)}
    assert found == {d["_id"] for d in docs if d.get("outbox_by") == "a"
                     and d["outbox_at"] in stamps}


async def as_written_before(collection: Any, active_key_of_active_runs: bool = False) -> None:
    """Turn what this version wrote into what the older one did: no stamp keys, no
    ``active`` key (``active_key`` on every active run instead), the old outbox index."""
    async for doc in collection.find({}):
        keys = [k for k in doc.get("lookup") or () if not k.startswith(PREFIX)]
        update: dict[str, Any] = {"$set": {"lookup": keys}}
        if active_key_of_active_runs:
            update = {"$unset": {"lookup": ""}}
            if "active" in keys:
                update["$set"] = {"active_key": f"run:{doc['_id']}"}
        await collection.update_one({"_id": doc["_id"]}, update)
    await collection.create_index(OLD_INDEX, name=OLD_OUTBOX_INDEX, sparse=True)


@pytest.fixture
async def coordinator(db: Any) -> tuple[CoordinatorHandler, Recorder]:
    definitions = DefinitionStore(db)
    definition = validate_definition(load_definition(DEFINITION, fmt="yaml"),
                                     known_actions=frozenset({"noop"}))
    await definitions.publish(definition, published_by="test", now=datetime.now(UTC))
    await ensure_indexes(db, RUN_INDEXES)
    publisher = Recorder()
    handler = CoordinatorHandler(RunStore(db, cast(Any, publisher)), definitions,
                                 cast(Any, publisher), CoordinatorMetrics(CollectorRegistry()))
    return handler, publisher


def told(payload: Any, run_id: str) -> Envelope:
    return new_event(payload, producer="test", run_id=run_id)


async def test_runs_an_older_version_wrote_are_keyed_swept_and_found_active(
    db: Any, coordinator: tuple[CoordinatorHandler, Recorder],
) -> None:
    handler, publisher = coordinator
    store = handler.store
    waiting, left = uuid.uuid4().hex, uuid.uuid4().hex
    await handler([told(StartRun(orchestration="stamp-keys"), waiting),
                   told(StartRun(orchestration="stamp-keys"), left)])
    await handler([told(StepCompleted(step="one", attempt=1), left)])
    await store.finished()
    assert await store.outboxes.write_mark()  # all so far went out
    publisher.broken = True  # the last save lands, its publish never happens
    await handler([told(StepCompleted(step="two", attempt=1), left)])
    with pytest.raises(ConnectionError):
        await store.finished()
    stored = await store.runs.find_one({"_id": left})
    assert stored is not None and stored["status"] == "completed"
    leftover = [parse(m.value).type for m in opened_outbox(stored["outbox"])]
    assert "RunCompleted" in leftover
    await as_written_before(store.runs, active_key_of_active_runs=True)
    assert await store.runs.count_documents(ACTIVE_RUNS) == 0

    restarted = Recorder()
    fresh = RunStore(db, cast(Any, restarted))  # the new version starts on it
    assert await fresh.migrate() == 1  # the waiting run
    assert OLD_OUTBOX_INDEX not in await fresh.runs.index_information()
    assert await fresh.migrate() == 0  # once
    assert await fresh.system.find_one({"_id": "migrated:runs:stamp-keys"}) is not None
    keyed = await fresh.runs.find_one({"_id": left})
    assert keyed is not None
    assert keyed["lookup"] == [stamp_key(keyed["outbox_by"], keyed["outbox_at"])]

    await fresh.outboxes.sweep(timedelta(0))
    assert restarted.types_for(left) == leftover  # what the stop left, once
    assert restarted.types_for(waiting) == []  # its writer's mark covers it

    # The active runs: the one written before, and one written now.
    publisher.broken = False
    handler.store.cache.clear()
    newer = uuid.uuid4().hex
    await handler([told(StartRun(orchestration="stamp-keys"), newer)])
    await handler.store.finished()
    found = await listing.list_runs(fresh.runs, db[RUN_HISTORY], {"status": "running"}, 10)
    assert {d["_id"] for d in found} == {waiting, newer}
    newest = await fresh.runs.find_one({"_id": newer})
    assert newest is not None and "active_key" not in newest  # not exclusive per record
    assert "active" in newest["lookup"]


DIRECTORY = {"users": [{"id": "ann"}]}


def dispatch(run_id: str) -> Envelope:
    request = WorkItemRequested(orchestration="it", version=1, stage="s", step="do", attempt=1,
                                kind="interactive", title="Do it",
                                assignee=AssigneeSpec(kind="user", value="ann"))
    return new_event(request, producer="test", run_id=run_id)


async def test_work_items_an_older_version_wrote_are_keyed_and_swept(db: Any) -> None:
    directory = DirectoryStore(db)
    await directory.load(DIRECTORY)
    await ensure_indexes(db, ITEM_INDEXES)
    metrics = ServiceMetrics(CollectorRegistry(), "it")
    crashed_publisher = Recorder()
    crashed = WorkItemStore(db, cast(Any, crashed_publisher), metrics)
    sent_run, left_run = uuid.uuid4().hex, uuid.uuid4().hex
    await DispatchHandler(crashed, directory)([dispatch(sent_run)])
    assert await crashed.spine.write_mark()
    crashed_publisher.broken = True
    with pytest.raises(ConnectionError):
        await DispatchHandler(crashed, directory)([dispatch(left_run)])
    await as_written_before(crashed.items)
    left = await crashed.items.find_one({"_id": f"{left_run}:do:1"})
    assert left is not None and not any(k.startswith(PREFIX) for k in left["lookup"])

    restarted = Recorder()
    fresh = WorkItemStore(db, cast(Any, restarted), metrics)
    replica = WorkItemStore(db, cast(Any, Recorder()), metrics)
    await asyncio.gather(fresh.migrate(), replica.migrate())  # two replicas start at once
    # the old outbox index is gone; the timers' comes with the first timer (decision 36)
    assert set(await fresh.items.index_information()) == {"_id_", "lookup_1"}
    keyed = await fresh.items.find_one({"_id": f"{left_run}:do:1"})
    assert keyed is not None
    assert stamp_key(keyed["outbox_by"], keyed["outbox_at"]) in keyed["lookup"]
    await fresh.spine.sweep(timedelta(0))
    assert restarted.types_for(left_run) == ["WorkItemAssigned"]
    assert restarted.types_for(sent_run) == []
    await fresh.migrate()  # again: nothing to key, no index to drop
    assert await fresh.system.find_one({"_id": "migrated:work_items:stamp-keys"}) is not None
