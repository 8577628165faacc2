"""The gauges computed from MongoDB, on the session's real MongoDB server.

Run and work item documents are written in the shape their writers give them
(``to_document`` of the coordinator's store, ``next_document`` of the assignment store);
the jobs aggregate them and the Prometheus registry serves the result.  Two jobs on two
registries stand for two replicas: they must report the same global values.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from plans import first_index_scan
from prometheus_client import CollectorRegistry, generate_latest
from pymongo import AsyncMongoClient

from services.assignment.core.workitem import Status, WorkItem
from services.assignment.gauges import WorkItemGauges
from services.assignment.lookup import with_status
from services.assignment.store import ACTIVE, failed_document, next_document
from services.assignment.store import INDEXES as WORK_ITEM_INDEXES
from services.stage_coordinator.core.state import (
    Run,
    RunStatus,
    StageState,
    StageStatus,
    StepState,
    StepStatus,
    Timer,
)
from services.stage_coordinator.gauges import RunGauges, StuckPolicy
from services.stage_coordinator.history import INDEXES as HISTORY_INDEXES
from services.stage_coordinator.store import ACTIVE_RUNS, OPTIONAL_FIELDS, StoredRun, to_document
from services.stage_coordinator.store import INDEXES as RUN_INDEXES
from shared.definitions.model import Definition
from shared.definitions.store import DefinitionStore
from shared.mongo import ensure_indexes

pytestmark = pytest.mark.integration

DEFINITION_V1 = """
name: obs-a
stages:
  - name: work
    steps:
      - {name: fetch, action: noop, sla: 10s}
      - {name: pause, action: wait, inputs: {duration: 1h}}
      - {name: review, kind: interactive, assignee: {user: hana}}
  - name: later
    steps:
      - {name: approve, kind: approval, assignee: {group: it}, sla: 30s}
"""
POLICY = StuckPolicy(default=timedelta(seconds=60), human=timedelta(hours=3))
TOLERANCE = 5.0  # seconds between writing the documents and the job's clock


@pytest.fixture
async def db(servers: Any) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(servers.mongodb_uri,
                                                                tz_aware=True)
    database = client[f"baton_gauges_{datetime.now(UTC).strftime('%H%M%S%f')}"]
    await ensure_indexes(database, [*RUN_INDEXES, *HISTORY_INDEXES, *WORK_ITEM_INDEXES])
    yield database
    await client.drop_database(database.name)
    await client.close()


def run_document(
    run_id: str,
    *,
    steps: list[tuple[str, str, str, float]],  # (stage, step, kind, started seconds ago)
    orchestration: str = "obs-a",
    version: int = 1,
    status: RunStatus = RunStatus.RUNNING,
    timers: list[Timer] | None = None,
    now: datetime,
) -> dict[str, Any]:
    stage = steps[0][0] if steps else "work"
    run = Run(
        id=run_id, orchestration=orchestration, version=version, status=status, stage=stage,
        stages={stage: StageState(name=stage, status=StageStatus.IN_PROGRESS,
                                  started_at=now - timedelta(hours=5), visits=1)},
        steps={name: StepState(name=name, stage=st, kind=kind, status=StepStatus.IN_PROGRESS,
                               started_at=now - timedelta(seconds=ago), attempt=1)
               for st, name, kind, ago in steps},
        timers=timers or [], created_at=now - timedelta(hours=5), updated_at=now,
    )
    doc = to_document(StoredRun(run=run))
    for key in OPTIONAL_FIELDS:  # as RunStore.save writes it: unset, not null
        if doc.get(key) is None:
            doc.pop(key, None)
    return doc


def wait_timer(step: str, due_in: float, now: datetime) -> Timer:
    return Timer(id=f"wait:{step}:1", due_at=now + timedelta(seconds=due_in), purpose="wait",
                 step=step)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def step_labels(step: str, kind: str, stage: str = "work", orchestration: str = "obs-a"
                ) -> dict[str, str]:
    return {"orchestration": orchestration, "stage": stage, "step": step, "kind": kind}


async def publish(db: Any) -> None:
    definitions = DefinitionStore(db)
    v1 = Definition.model_validate(yaml.safe_load(DEFINITION_V1))
    await definitions.publish(v1, published_by="test", now=datetime.now(UTC))
    # version 2 gives fetch a long sla: its runs are measured against it, not against v1's
    raw = yaml.safe_load(DEFINITION_V1)
    raw["stages"][0]["steps"][0]["sla"] = "1000s"
    await definitions.publish(Definition.model_validate(raw), published_by="test",
                              now=datetime.now(UTC))


async def test_stuck_steps_and_active_runs_are_counted_from_the_run_documents(db: Any) -> None:
    await publish(db)
    now = datetime.now(UTC)
    B, H, A = "background", "interactive", "approval"
    docs = [
        run_document("r1", steps=[("work", "fetch", B, 20)], now=now),      # stuck (sla 10s)
        run_document("r2", steps=[("work", "fetch", B, 5)], now=now),       # within its sla
        run_document("r3", steps=[("work", "fetch", B, 100)], now=now),     # stuck, the oldest
        run_document("r11", steps=[("work", "fetch", B, 500)], version=2, now=now),  # v2: 1000s
        # wait steps: measured from their wait timer
        run_document("r4", steps=[("work", "pause", B, 7200)],
                     timers=[wait_timer("pause", 3600, now)], now=now),     # still waiting
        run_document("r5", steps=[("work", "pause", B, 7300)],
                     timers=[wait_timer("pause", -120, now)], now=now),     # overdue 120s: stuck
        run_document("r6", steps=[("work", "pause", B, 1800)],
                     timers=[wait_timer("pause", -30, now)], now=now),      # overdue 30s only
        # people's steps without an sla: the human default (3h here)
        run_document("r7", steps=[("work", "review", H, 7200)], now=now),
        run_document("r8", steps=[("work", "review", H, 14400)], now=now),  # stuck
        run_document("r9", steps=[("later", "approve", A, 40)], status=RunStatus.SUSPENDED,
                     now=now),                                              # stuck (sla 30s)
        run_document("r10", steps=[], status=RunStatus.COMPLETED, now=now),
        # a run whose definition is gone: the default threshold (60s)
        run_document("g1", steps=[("s", "poll", B, 70)], orchestration="ghost", now=now),
    ]
    await db.runs.insert_many(docs)

    registries = [CollectorRegistry(), CollectorRegistry()]
    for registry in registries:  # two replicas, each with its own definition cache
        job = RunGauges(db.runs, DefinitionStore(db), registry, "stage-coordinator", POLICY)
        await job()
    registry = registries[0]

    expected = {  # (step, kind, stage): (in progress, stuck, oldest stuck age)
        ("fetch", B, "work"): (4, 1 + 1, 100),
        ("pause", B, "work"): (3, 1, 7300),
        ("review", H, "work"): (2, 1, 14400),
        ("approve", A, "later"): (1, 1, 40),
    }
    for (step, kind, stage), (wip, stuck, oldest) in expected.items():
        labels = step_labels(step, kind, stage)
        assert sample(registry, "baton_steps_in_progress", **labels) == wip, step
        assert sample(registry, "baton_steps_stuck", **labels) == stuck, step
        age = sample(registry, "baton_steps_stuck_oldest_age_seconds", **labels)
        assert age is not None and oldest <= age < oldest + TOLERANCE, (step, age)
    ghost = step_labels("poll", B, "s", "ghost")
    assert sample(registry, "baton_steps_stuck", **ghost) == 1

    assert sample(registry, "baton_runs_active", orchestration="obs-a", stage="work",
                  status="running") == 9
    assert sample(registry, "baton_runs_active", orchestration="obs-a", stage="later",
                  status="suspended") == 1
    assert sample(registry, "baton_runs_active", orchestration="ghost", stage="s",
                  status="running") == 1
    assert sample(registry, "baton_runs_active", orchestration="obs-a", stage="",
                  status="completed") is None
    refreshed = sample(registry, "baton_gauges_refreshed_timestamp_seconds",
                       service="stage-coordinator")
    assert refreshed is not None and abs(refreshed - now.timestamp()) < 60

    # the replicas agree on every value (not double counted, nothing per replica)
    def family_lines(r: CollectorRegistry) -> list[str]:
        return sorted(line for line in generate_latest(r).decode().splitlines()
                      if line.startswith(("baton_steps_stuck ", "baton_steps_stuck{",
                                          "baton_steps_in_progress{", "baton_runs_active{")))
    assert family_lines(registries[0]) == family_lines(registries[1])

    # runs move on: r3 finishes its step, the oldest stuck fetch is r1 now
    await db.runs.update_one({"_id": "r3"}, {"$set": {"active_steps": []}})
    job = RunGauges(db.runs, DefinitionStore(db), registry := CollectorRegistry(),
                    "stage-coordinator", POLICY)
    await job()
    fetch = step_labels("fetch", B)
    assert sample(registry, "baton_steps_stuck", **fetch) == 1
    age = sample(registry, "baton_steps_stuck_oldest_age_seconds", **fetch)
    assert age is not None and 20 <= age < 20 + TOLERANCE

    # every fetch done: the series stay, at 0
    await db.runs.update_many({"active_steps.step": "fetch"}, {"$set": {"active_steps": []}})
    await job()
    assert sample(registry, "baton_steps_stuck", **fetch) == 0
    assert sample(registry, "baton_steps_in_progress", **fetch) == 0
    assert sample(registry, "baton_steps_stuck_oldest_age_seconds", **fetch) == 0


def work_item(item_id: str, *, kind: str, assignee: str, status: Status, created_ago: float,
              due_in: float | None, now: datetime) -> dict[str, Any]:
    item = WorkItem(
        id=item_id, run_id=f"run-{item_id}", orchestration="obs-a", version=1, stage="work",
        step="review", attempt=1, kind="interactive", title="Review", status=status,
        assignee_kind=kind, assignee=assignee,
        claimed_by="ivan" if status == Status.CLAIMED else None,
        due_at=now + timedelta(seconds=due_in) if due_in is not None else None,
        created_at=now - timedelta(seconds=created_ago), updated_at=now,
    )
    return next_document(None, item, published=[], now=now)


async def test_work_item_gauges_count_open_items_ages_and_overdue(db: Any) -> None:
    now = datetime.now(UTC)
    await db.work_items.insert_many([
        work_item("w1", kind="group", assignee="it", status=Status.OPEN, created_ago=100,
                  due_in=-10, now=now),
        work_item("w2", kind="group", assignee="it", status=Status.CLAIMED, created_ago=50,
                  due_in=3600, now=now),
        work_item("w3", kind="user", assignee="hana", status=Status.OPEN, created_ago=300,
                  due_in=None, now=now),
        work_item("w4", kind="queue", assignee="desk", status=Status.OPEN, created_ago=10,
                  due_in=-1, now=now),
        work_item("w5", kind="group", assignee="it", status=Status.OPEN, created_ago=20,
                  due_in=-5, now=now),
        work_item("w6", kind="group", assignee="it", status=Status.COMPLETED, created_ago=1000,
                  due_in=-500, now=now),
        failed_document(None, item_id="x:y:1", run_id="x", step="y", attempt=1,
                        error="no such user", published=[], now=now),
    ])
    registries = [CollectorRegistry(), CollectorRegistry()]
    for registry in registries:
        await WorkItemGauges(db.work_items, registry, "assignment")()
    registry = registries[0]

    def item_sample(name: str, **labels: str) -> float | None:
        return sample(registry, name, **labels)

    assert item_sample("baton_work_items_open", assignee_kind="group", pool="it",
                       status="open") == 2
    assert item_sample("baton_work_items_open", assignee_kind="group", pool="it",
                       status="claimed") == 1
    assert item_sample("baton_work_items_open", assignee_kind="user", pool="",
                       status="open") == 1
    assert item_sample("baton_work_items_open", assignee_kind="queue", pool="desk",
                       status="open") == 1
    assert item_sample("baton_work_items_open", assignee_kind="group", pool="it",
                       status="completed") is None
    for labels, oldest in (({"assignee_kind": "group", "pool": "it", "status": "open"}, 100),
                           ({"assignee_kind": "user", "pool": "", "status": "open"}, 300),
                           ({"assignee_kind": "group", "pool": "it", "status": "claimed"}, 50)):
        age = item_sample("baton_work_items_oldest_age_seconds", **labels)
        assert age is not None and oldest <= age < oldest + TOLERANCE, (labels, age)
    assert item_sample("baton_work_items_overdue", assignee_kind="group", pool="it") == 2
    assert item_sample("baton_work_items_overdue", assignee_kind="queue", pool="desk") == 1
    assert item_sample("baton_work_items_overdue", assignee_kind="user", pool="") == 0

    exposition = generate_latest(registry).decode()
    assert "hana" not in exposition and "ivan" not in exposition  # never a user id

    def counts(r: CollectorRegistry) -> list[str]:  # the ages differ by the time between jobs
        return sorted(line for line in generate_latest(r).decode().splitlines()
                      if line.startswith(("baton_work_items_open{", "baton_work_items_overdue{")))
    assert counts(registries[0]) == counts(registries[1])

    # an item completed: it leaves the counts, and its pool's overdue count drops
    completed = work_item("w1", kind="group", assignee="it", status=Status.COMPLETED,
                          created_ago=100, due_in=-10, now=now)
    await db.work_items.replace_one({"_id": "w1"}, completed)
    await WorkItemGauges(db.work_items, registry := CollectorRegistry(), "assignment")()
    assert sample(registry, "baton_work_items_open", assignee_kind="group", pool="it",
                  status="open") == 1
    assert sample(registry, "baton_work_items_overdue", assignee_kind="group", pool="it") == 1


@pytest.mark.parametrize(("collection", "query", "index"), [
    # Gauges, stats and lists read the active runs through their ``active`` key.  Their
    # other clauses are checked on the documents found: with several clauses the server
    # looks the first indexed one up alone (its explain says COLLSCAN then, decision 8;
    # tests/unit/test_query_plans.py checks that the active-run clause comes first).
    ("runs", ACTIVE_RUNS, "lookup_1"),
    ("run_history", {"run_ids": {"$in": ["r1"]}}, "run_ids_1"),
    ("work_items", with_status(ACTIVE), "lookup_1"),  # the work item gauges' $match
])
async def test_every_gauge_and_stats_query_is_behind_an_index(
    db: Any, collection: str, query: dict[str, Any], index: str
) -> None:
    now = datetime.now(UTC)
    await db[collection].insert_one({"probe": True, "updated_at": now, "status": "running"})
    resolved = {k: {op: (now if v == "NOW" else v) for op, v in cond.items()}
                if isinstance(cond, dict) else cond for k, cond in query.items()}
    scanned, plan = await first_index_scan(db, collection, resolved)
    assert scanned == index, plan
