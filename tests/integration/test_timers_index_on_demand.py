"""The timers' index exists once a timer does (decision 36), and the unique ``active_key``
index of runs once a run holds its record (decision 43), on the real embedded MongoDB.

- a collection no timer was saved to has no ``next_timer_at`` index, and the due-timer
  reads answer "nothing" with one ``listIndexes``, never a find (which would scan);
- the save of the first timer creates the index before it writes the document, so another
  replica (its own client, which had looked and found no index) finds and fires the
  timer on its next tick;
- both for the spine's stores (work items) and for the coordinator's runs;
- runs that hold no record leave ``runs`` without a unique index (the embedded server
  reads its index catalogue for every document written where there is one); the first
  save of a run that holds its record creates it before the write, and another replica
  that never saw it is still refused a second active run of that record.

Each test has a database of its own: the index must not be there from another test.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pymongo import monitoring
from recorders import Recorder

from contracts.envelope import new_event
from contracts.events.commands import RecordRef, StartRun
from contracts.events.workitems import AssigneeSpec, Escalation, WorkItemRequested
from services.assignment.directory_store import DirectoryStore
from services.assignment.guide import WorkGuide
from services.assignment.handler import DispatchHandler
from services.assignment.store import WORK_ITEMS, WorkItemStore
from services.stage_coordinator.handler import CoordinatorHandler
from services.stage_coordinator.jobs import Reconciler, TimerFirer
from services.stage_coordinator.metrics import CoordinatorMetrics
from services.stage_coordinator.store import ACTIVE_KEY_INDEX, RUNS, RunStore
from shared.definitions.loading import load_definition
from shared.definitions.store import DefinitionStore
from shared.definitions.validate import validate_definition
from shared.metrics import ServiceMetrics
from shared.mongo import make_client

pytestmark = pytest.mark.integration

TIMERS = "next_timer_at_1"
DIRECTORY = {"users": [{"id": "ann"}, {"id": "cy", "manager": "ann"}]}
WAITS = """
name: lazy-timers-waits
stages:
  - name: only
    steps:
      - {name: pause, action: wait, inputs: {duration: 1h}}
"""


class Replica:
    """One process's client on the shared database, with the commands it sends."""

    def __init__(self, uri: str, database: str) -> None:
        self.commands: list[tuple[str, str]] = []  # (command, collection)
        self.client = make_client(uri, app_name="lazy-timers", listeners=[_Recording(self)])
        self.db = self.client[database]
        self.publisher = Recorder()

    def on(self, collection: str) -> Counter[str]:
        """The commands sent about ``collection`` since the last :meth:`clear`."""
        return Counter(name for name, target in self.commands if target == collection)

    def clear(self) -> None:
        self.commands.clear()


class _Recording(monitoring.CommandListener):
    def __init__(self, replica: Replica) -> None:
        self.replica = replica

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        self.replica.commands.append((name, str(event.command.get(name, ""))))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
async def replicas(servers: Any) -> AsyncIterator[tuple[Replica, Replica]]:
    database = f"baton_lazy_timers_{uuid.uuid4().hex[:10]}"
    pair = (Replica(servers.mongodb_uri, database), Replica(servers.mongodb_uri, database))
    yield pair
    for replica in pair:
        await replica.client.close()


async def indexes(replica: Replica, collection: str) -> set[str]:
    return set(await replica.db[collection].index_information())


# -- the spine (work items) ---------------------------------------------------------------

def metrics() -> ServiceMetrics:
    return ServiceMetrics(CollectorRegistry(), "lazy-timers")


async def guide(replica: Replica) -> WorkGuide:
    directory = DirectoryStore(replica.db)
    await directory.load(DIRECTORY)
    store = WorkItemStore(replica.db, replica.publisher, metrics())  # type: ignore[arg-type]
    return WorkGuide(store, directory)


async def open_item(work: WorkGuide, **extra: Any) -> str:
    run_id = uuid.uuid4().hex
    request = WorkItemRequested(orchestration="it", version=1, stage="s", step="do", attempt=1,
                                kind="interactive", title="Do it",
                                assignee=AssigneeSpec(kind="user", value="cy"), **extra)
    await DispatchHandler(work.store, work.directory)(
        [new_event(request, producer="test", run_id=run_id)])
    return run_id


async def test_work_items_without_timers_have_no_timers_index_and_no_due_read(
        replicas: tuple[Replica, Replica]) -> None:
    one, _ = replicas
    work = await guide(one)
    await open_item(work)  # no due date: no timer
    assert TIMERS not in await indexes(one, WORK_ITEMS)
    one.clear()
    assert await work.fire_due_timers() == 0
    assert await work.fire_due_timers() == 0
    assert one.on(WORK_ITEMS) == {"listIndexes": 2}  # one look per tick, and no find


async def test_the_first_work_item_timer_creates_the_index_and_another_replica_fires_it(
        replicas: tuple[Replica, Replica]) -> None:
    one, two = replicas
    writer, other = await guide(one), await guide(two)
    assert await other.fire_due_timers() == 0  # looked: no index yet
    two.clear()

    due = datetime.now(UTC) + timedelta(days=1)
    run_id = await open_item(writer, due_at=due, escalation=Escalation(after_due_seconds=0))
    written = [name for name, target in one.commands if target == WORK_ITEMS]
    assert written.index("createIndexes") < written.index("insert")
    assert TIMERS in await indexes(one, WORK_ITEMS)

    other.timers.clock = lambda: due + timedelta(seconds=1)  # the escalation is due
    assert await other.fire_due_timers() == 1
    assert two.on(WORK_ITEMS)["find"] >= 1  # it looked, this time
    escalated = [e.type for e in two.publisher.sent if e.run_id == run_id]
    assert escalated.count("WorkItemEscalated") == 1
    two.clear()
    await other.fire_due_timers()
    assert "listIndexes" not in two.on(WORK_ITEMS)  # seen once: remembered


# -- the coordinator (runs) -----------------------------------------------------------------

async def coordinator(replica: Replica, *sources: str) -> CoordinatorHandler:
    definitions = DefinitionStore(replica.db)
    for source in sources or (WAITS,):
        definition = validate_definition(load_definition(source, fmt="yaml"),
                                         known_actions=frozenset({"wait"}))
        await definitions.publish(definition, published_by="test", now=datetime.now(UTC))
    return CoordinatorHandler(RunStore(replica.db, replica.publisher),  # type: ignore[arg-type]
                              definitions, replica.publisher,  # type: ignore[arg-type]
                              CoordinatorMetrics(CollectorRegistry()))


def firer(replica: Replica, store: RunStore, clock: Any = None) -> TimerFirer:
    return TimerFirer(store.runs, replica.publisher,  # type: ignore[arg-type]
                      clock or (lambda: datetime.now(UTC)), timers_index=store.timers_index)


async def test_runs_without_timers_have_no_timers_index_and_no_due_read(
        replicas: tuple[Replica, Replica]) -> None:
    one, _ = replicas
    store = RunStore(one.db, one.publisher)  # type: ignore[arg-type]
    await store.runs.insert_one({"_id": "a-run-without-timers"})
    one.clear()
    job = firer(one, store)
    assert await job() is None and await job() is None  # nothing due, ever
    assert one.on(RUNS) == {"listIndexes": 2}  # one look per tick, and no find
    one.clear()
    reconcile = Reconciler(store.runs, one.publisher, store.outboxes,  # type: ignore[arg-type]
                           timers_index=store.timers_index)
    await reconcile()
    assert one.on(RUNS)["listIndexes"] == 1
    assert one.on(RUNS)["update"] == 0  # no timer, so no lease to clear
    assert TIMERS not in await indexes(one, RUNS)


async def test_the_first_run_timer_creates_the_index_and_another_replica_fires_it(
        replicas: tuple[Replica, Replica]) -> None:
    one, two = replicas
    handler = await coordinator(one)
    other = RunStore(two.db, two.publisher)  # type: ignore[arg-type]
    later = datetime.now(UTC) + timedelta(hours=2)  # the run's wait (1 h) is due then
    job = firer(two, other, clock=lambda: later)
    assert await job() is None  # looked: no index yet

    run_id = uuid.uuid4().hex
    one.clear()
    await handler([new_event(StartRun(orchestration="lazy-timers-waits"), producer="test",
                             run_id=run_id)])
    await handler.store.finished()
    written = [name for name, target in one.commands if target == RUNS]
    assert written.index("createIndexes") < written.index("insert")
    assert TIMERS in await indexes(one, RUNS)

    two.clear()
    await job()
    assert job.fired == 1
    fired = [e for e in two.publisher.sent if e.run_id == run_id]
    assert [(e.type, e.payload.purpose) for e in fired] == [("TimerFired", "wait")]
    assert two.on(RUNS)["listIndexes"] == 1  # seen now, and remembered:
    await job()
    assert two.on(RUNS)["listIndexes"] == 1


async def test_a_reconcile_creates_again_the_index_a_restarted_server_lost(
        replicas: tuple[Replica, Replica]) -> None:
    """A server back without its last acknowledged writes may have lost the index while
    this process, which knew it, goes on writing timers: its reconcile creates it again."""
    one, _ = replicas
    handler = await coordinator(one)
    store = handler.store
    await store.timers_index.restore()  # knew nothing: nothing to do
    assert TIMERS not in await indexes(one, RUNS)
    await handler([new_event(StartRun(orchestration="lazy-timers-waits"), producer="test",
                             run_id=uuid.uuid4().hex)])
    await store.finished()
    await store.runs.drop_index(TIMERS)  # what the server lost
    await store.timers_index.restore()
    assert TIMERS in await indexes(one, RUNS)


# -- the runs' unique active_key index ----------------------------------------------------

ACTIVE_KEY = ACTIVE_KEY_INDEX.name
HOLDS = """
name: lazy-holds
trigger:
  record: {object: Quote, on: [created, updated]}
  at_most_one_active_per_record: true
stages:
  - name: only
    steps:
      - {name: pause, action: wait, inputs: {duration: 1h}}
"""


def start_of(orchestration: str, record: str | None = None) -> Any:
    ref = RecordRef(object_type="Quote", record_id=record) if record else None
    return new_event(StartRun(orchestration=orchestration, record=ref,
                              at_most_one_active_per_record=record is not None),
                     producer="test", run_id=uuid.uuid4().hex)


async def test_a_run_that_holds_its_record_creates_the_unique_index_before_its_write(
        replicas: tuple[Replica, Replica]) -> None:
    one, two = replicas
    handler = await coordinator(one, WAITS, HOLDS)
    await handler([start_of("lazy-timers-waits"), start_of("lazy-holds")])  # no record
    await handler.store.finished()
    assert await handler.store.runs.count_documents({}) == 2
    assert ACTIVE_KEY not in await indexes(one, RUNS)  # nothing holds a record

    one.clear()
    first = start_of("lazy-holds", "q1")
    await handler([first])
    await handler.store.finished()
    written = [name for name, target in one.commands if target == RUNS]
    assert written.index("createIndexes") < written.index("insert")
    assert ACTIVE_KEY in await indexes(one, RUNS)
    held = await handler.store.runs.find_one({"_id": first.run_id})
    assert held is not None and held["active_key"] == "lazy-holds|Quote:q1"

    # Another replica, which never looked for the index, starts the same record again.
    other = await coordinator(two)
    assert not other.store.active_key_index.known
    second = start_of("lazy-holds", "q1")
    await other([second, start_of("lazy-holds", "q2")])
    await other.store.finished()
    assert await other.store.runs.find_one({"_id": second.run_id}) is None
    rejected = [e for e in two.publisher.sent if e.run_id == second.run_id]
    assert [e.type for e in rejected] == ["RunStartRejected"]
    assert await other.store.runs.count_documents({"active_key": {"$exists": True}}) == 2
