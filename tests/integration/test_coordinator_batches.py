"""The coordinator's shell on the real MongoDB and Kafka: batches that carry several
messages for one run are written in one guarded write, and land.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from contracts.envelope import new_event
from contracts.events.commands import StartRun
from contracts.events.steps import StepCompleted
from services.stage_coordinator.handler import CoordinatorHandler
from services.stage_coordinator.history import read_history
from services.stage_coordinator.metrics import CoordinatorMetrics
from services.stage_coordinator.store import RunStore, unpacked
from shared.definitions.loading import load_definition
from shared.definitions.store import DefinitionStore
from shared.definitions.validate import validate_definition
from shared.messaging import Publisher, make_broker
from shared.metrics import ServiceMetrics
from shared.mongo import make_client
from shared.settings import ServiceSettings
from shared.topics import ensure_topics

pytestmark = pytest.mark.integration

DEFINITION = """
name: two-at-once
stages:
  - name: both
    steps:
      - {name: left, action: noop}
      - {name: right, action: noop}
  - name: after
    steps:
      - {name: last, action: noop}
"""


@pytest.fixture(scope="module")
async def handler(servers: Any, database: str) -> AsyncIterator[CoordinatorHandler]:
    settings = ServiceSettings(service_name="coordinator-it",
                               kafka_bootstrap=servers.kafka_bootstrap,
                               mongodb_uri=servers.mongodb_uri, mongodb_database=database)
    metrics = ServiceMetrics(CollectorRegistry(), "coordinator-it")
    await ensure_topics(servers.kafka_bootstrap)  # when this module runs alone
    broker = make_broker(settings)
    await broker.connect()
    client = make_client(servers.mongodb_uri, app_name="coordinator-it")
    db = client[database]
    definitions = DefinitionStore(db)
    definition = validate_definition(load_definition(DEFINITION, fmt="yaml"),
                                     known_actions=frozenset({"noop"}))
    await definitions.publish(definition, published_by="test", now=datetime.now(UTC))
    publisher = Publisher(broker, metrics)
    yield CoordinatorHandler(RunStore(db, publisher), definitions, publisher,
                             CoordinatorMetrics(CollectorRegistry()))
    await broker.stop()
    await client.close()


async def test_two_outcomes_of_one_run_in_one_batch_land_together(
    handler: CoordinatorHandler,
) -> None:
    run_id = uuid.uuid4().hex
    await handler([new_event(StartRun(orchestration="two-at-once"), producer="test",
                             run_id=run_id)])
    await handler.store.finished()
    started = await handler.store.runs.find_one({"_id": run_id})
    assert started is not None and started["stage"] == "both"

    handler.store.cache.clear()  # as after a restart: the batch reads the run from MongoDB
    outcomes = [new_event(StepCompleted(step=step, attempt=1), producer="test", run_id=run_id)
                for step in ("left", "right")]
    await handler(outcomes)
    await handler.store.finished()

    stored = unpacked(await handler.store.runs.find_one({"_id": run_id}) or {})
    assert stored["stage"] == "after"
    assert stored["steps"]["left"]["status"] == stored["steps"]["right"]["status"] == "completed"
    history = await read_history(handler.store.history, stored)
    assert stored["revision"] == len(history) > started["revision"]
    assert [e["revision"] for e in history] == list(range(1, stored["revision"] + 1))
    assert "history" not in stored  # the history lives in run_history

    # The cached copy guards the next write correctly too.
    await handler([new_event(StepCompleted(step="last", attempt=1), producer="test",
                             run_id=run_id)])
    await handler.store.finished()
    finished = await handler.store.runs.find_one({"_id": run_id})
    assert finished is not None and finished["status"] == "completed"
    assert finished["revision"] == len(await read_history(handler.store.history, finished))
    # A finished run leaves the cache (memory stays flat under a steady load); a late
    # duplicate outcome reads it back and changes nothing.
    assert run_id not in handler.store.cache
    await handler([new_event(StepCompleted(step="last", attempt=1), producer="test",
                             run_id=run_id)])
    await handler.store.finished()
    again = await handler.store.runs.find_one({"_id": run_id})
    assert again is not None and again["revision"] == finished["revision"]


async def test_the_index_of_cleared_outboxes_is_dropped_at_start(
    handler: CoordinatorHandler,
) -> None:
    """Outboxes are marked, not cleared (decision 16): an older version's `outbox_at_1`
    index would cost every run write for nothing."""
    runs = handler.store.runs
    await runs.create_index([("outbox_at", 1)], name="outbox_at_1", sparse=True)
    await handler.store.migrate()
    await handler.store.migrate()  # again: nothing left to drop
    assert "outbox_at_1" not in await runs.index_information()
