"""The run history in ``run_history`` (decision 14), on the real embedded MongoDB.

- a consumed batch of many runs writes one history page, in one more round trip;
- a stop between the run save and the page loses nothing: the entries wait in the run
  document, readers see them, and the run's next batch (or another coordinator's outbox
  sweep) pages them;
- a save that makes a timer due rings the timer firer's alarm.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pymongo import monitoring

from contracts.envelope import new_event
from contracts.events.commands import StartRun
from contracts.events.steps import StepCompleted
from services.stage_coordinator.handler import CoordinatorHandler
from services.stage_coordinator.history import RUN_HISTORY, read_history
from services.stage_coordinator.metrics import CoordinatorMetrics
from services.stage_coordinator.store import RunStore
from shared.definitions.loading import load_definition
from shared.definitions.store import DefinitionStore
from shared.definitions.validate import validate_definition
from shared.messaging import Publisher, make_broker
from shared.metrics import ServiceMetrics
from shared.mongo import make_client
from shared.packed import opened_all
from shared.settings import ServiceSettings
from shared.topics import ensure_topics

pytestmark = pytest.mark.integration

DEFINITIONS = ["""
name: history-two-steps
stages:
  - name: first
    steps:
      - {name: one, action: noop}
  - name: second
    steps:
      - {name: two, action: noop}
""", """
name: history-waits
stages:
  - name: only
    steps:
      - {name: pause, action: wait, inputs: {duration: 1h}}
"""]


class Writes(monitoring.CommandListener):
    """The write commands a client sends, by collection."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("insert", "update"):
            self.seen.append((event.command_name, str(event.command[event.command_name])))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


class Stack:
    def __init__(self, db: Any, publisher: Publisher, metrics: ServiceMetrics,
                 writes: Writes) -> None:
        self.db, self.publisher, self.metrics, self.writes = db, publisher, metrics, writes

    def handler(self) -> CoordinatorHandler:
        """A fresh coordinator, as after a restart: an empty cache."""
        return CoordinatorHandler(RunStore(self.db, self.publisher), DefinitionStore(self.db),
                                  self.publisher, CoordinatorMetrics(CollectorRegistry()))


@pytest.fixture(scope="module")
async def stack(servers: Any, database: str) -> AsyncIterator[Stack]:
    settings = ServiceSettings(service_name="history-it",
                               kafka_bootstrap=servers.kafka_bootstrap,
                               mongodb_uri=servers.mongodb_uri, mongodb_database=database)
    metrics = ServiceMetrics(CollectorRegistry(), "history-it")
    await ensure_topics(servers.kafka_bootstrap)  # when this module runs alone
    broker = make_broker(settings)
    await broker.connect()
    writes = Writes()
    client = make_client(servers.mongodb_uri, app_name="history-it", listeners=[writes])
    db = client[database]
    definitions = DefinitionStore(db)
    for text in DEFINITIONS:
        definition = validate_definition(load_definition(text, fmt="yaml"),
                                         known_actions=frozenset({"noop", "wait"}))
        await definitions.publish(definition, published_by="test", now=datetime.now(UTC))
    yield Stack(db, Publisher(broker, metrics), metrics, writes)
    await broker.stop()
    await client.close()


async def handled(handler: CoordinatorHandler, envelopes: list[Any]) -> None:
    """A batch, and what its save left to do: the messages and the history page."""
    await handler(envelopes)
    await handler.store.finished()


def start(run_id: str, orchestration: str = "history-two-steps") -> Any:
    return new_event(StartRun(orchestration=orchestration), producer="test", run_id=run_id)


def done(run_id: str, step: str) -> Any:
    return new_event(StepCompleted(step=step, attempt=1), producer="test", run_id=run_id)


async def test_a_batch_of_many_runs_writes_one_history_page_in_one_more_round_trip(
    stack: Stack,
) -> None:
    handler = stack.handler()
    run_ids = [uuid.uuid4().hex for _ in range(12)]
    stack.writes.seen.clear()
    await handled(handler, [start(run_id) for run_id in run_ids])

    # The writer's mark comes first, once per process (not per batch): decision 16.
    assert stack.writes.seen == [("update", "system"), ("insert", "runs"),
                                 ("insert", RUN_HISTORY)]
    pages = await stack.db[RUN_HISTORY].find({"run_ids": {"$in": run_ids}}).to_list(None)
    assert len(pages) == 1 and sorted(pages[0]["run_ids"]) == sorted(run_ids)
    assert all(isinstance(entry, bytes) for entry in pages[0]["entries"])  # packed
    read = {}
    for run_id in run_ids:
        run = await stack.db.runs.find_one({"_id": run_id})
        assert "history" not in run
        history = await read_history(stack.db[RUN_HISTORY], run)
        assert [e["revision"] for e in history] == list(range(1, run["revision"] + 1))
        assert history[0]["kind"] == "RunCreated"
        read[run_id] = (run, history)
    # A page written before entries were packed holds them as subdocuments: read the same.
    await stack.db[RUN_HISTORY].replace_one(
        {"_id": pages[0]["_id"]},
        {**pages[0], "entries": opened_all(pages[0]["entries"])})
    for run, history in read.values():
        assert await read_history(stack.db[RUN_HISTORY], run) == history


async def test_a_stop_between_the_run_save_and_its_history_page_loses_nothing(
    stack: Stack, monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_id = uuid.uuid4().hex
    handler = stack.handler()

    async def stopped(runs: Any) -> int:
        raise ConnectionError("the process stopped here")
    monkeypatch.setattr(handler.store, "_page", stopped)
    with pytest.raises(ConnectionError):
        await handled(handler, [start(run_id)])

    run = await stack.db.runs.find_one({"_id": run_id})
    assert run is not None and run["revision"] > 0
    assert await stack.db[RUN_HISTORY].count_documents({"run_ids": run_id}) == 0
    saved = await read_history(stack.db[RUN_HISTORY], run)  # from the run document
    assert [e["revision"] for e in saved] == list(range(1, run["revision"] + 1))

    # The next owner's next batch for the run pages what was left with its own entries.
    await handled(stack.handler(), [done(run_id, "one")])
    run = await stack.db.runs.find_one({"_id": run_id})
    paged = await read_history(stack.db[RUN_HISTORY], {"_id": run_id})  # pages alone
    assert [e["revision"] for e in paged] == list(range(1, run["revision"] + 1))
    assert paged[: len(saved)] == saved


async def test_the_outbox_sweep_pages_the_history_a_stop_left_with_a_finished_run(
    stack: Stack, monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_id = uuid.uuid4().hex
    handler = stack.handler()
    await handled(handler, [start(run_id)])
    await handled(handler, [done(run_id, "one")])

    async def stopped(runs: Any) -> int:
        raise ConnectionError("the process stopped here")
    monkeypatch.setattr(handler.store, "_page", stopped)
    with pytest.raises(ConnectionError):
        await handled(handler, [done(run_id, "two")])  # the last transition: nothing comes after
    run = await stack.db.runs.find_one({"_id": run_id})
    assert run["status"] == "completed" and run["outbox"] and run["pending_history"]

    sweeper = stack.handler().store  # another coordinator; the stopped one never sweeps
    assert await sweeper.outboxes.sweep(timedelta(0)) >= 1
    paged = await read_history(stack.db[RUN_HISTORY], {"_id": run_id})
    assert [e["revision"] for e in paged] == list(range(1, run["revision"] + 1))
    assert paged[-1]["kind"] == "RunStatusChanged" and paged[-1]["status"] == "completed"


async def test_saving_a_timer_rings_the_timer_firer_once(stack: Stack) -> None:
    handler = stack.handler()
    alarm = handler.store.timers
    alarm.next_due = datetime.now(UTC) + timedelta(days=1)  # the firer sleeps long
    run_id = uuid.uuid4().hex
    await handled(handler, [start(run_id, "history-waits")])

    run = await stack.db.runs.find_one({"_id": run_id})
    assert alarm.event.is_set() and alarm.next_due is not None
    assert abs(alarm.next_due - run["next_timer_at"]) < timedelta(milliseconds=1)
    alarm.event.clear()
    await handled(handler, [start(uuid.uuid4().hex, "history-waits")])  # due later than planned
    assert not alarm.event.is_set()
