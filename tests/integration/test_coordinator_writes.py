"""What one run of the bench workload costs the coordinator: documents written to MongoDB
(counted by the client's command listener, as the services count them) and messages
published, input by input (docs/decisions/0017-message-budget.md).

The handler is driven as the two consumers drive it, with a recording publisher; the
outbox clears run when the test says, as the periodic job runs them: after every input
(a burst, where a run's next input comes seconds later) or once at the end (a quick run).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from contracts import Envelope
from contracts.envelope import new_event
from contracts.events.commands import StartRun
from contracts.events.steps import StepCompleted
from contracts.events.workitems import WorkItemAssigned
from services.stage_coordinator.handler import CoordinatorHandler, WorkItemFeed
from services.stage_coordinator.metrics import CoordinatorMetrics
from services.stage_coordinator.store import RUNS, RunStore
from shared.definitions.loading import load_definition
from shared.definitions.store import DefinitionStore
from shared.definitions.validate import validate_definition
from shared.mongo import CommandCounter, make_client

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


@dataclass
class Coordinator:
    handler: CoordinatorHandler
    feed: WorkItemFeed
    publisher: RecordingPublisher
    written: Counter[str]


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
    handler = CoordinatorHandler(RunStore(db), definitions, publisher,  # type: ignore[arg-type]
                                 CoordinatorMetrics(CollectorRegistry()))
    written.clear()  # what publishing the definition wrote is not the run's
    yield Coordinator(handler, WorkItemFeed(handler), publisher, written)
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


async def drive(coordinator: Coordinator, run_id: str, *, clear_between: bool) -> None:
    for consumer, envelope in inputs(run_id):
        if consumer == "feed":
            await coordinator.feed([envelope])
        else:
            await coordinator.handler([envelope])
        if clear_between:
            await coordinator.handler.store.flush_clears()
    await coordinator.handler.store.flush_clears()


def sent_types(coordinator: Coordinator, topic: str) -> list[str]:
    return [e.type for e in coordinator.publisher.sent if topic == e.payload.TOPIC]


async def test_a_bench_run_writes_its_five_changes_and_a_clear_per_outbox_left_standing(
    coordinator: Coordinator,
) -> None:
    run_id = uuid.uuid4().hex
    await drive(coordinator, run_id, clear_between=True)
    run = await coordinator.handler.store.runs.find_one({"_id": run_id})
    assert run is not None and run["status"] == "completed" and "outbox_at" not in run
    # Five inputs change the run; an assignment naming the person the run dispatched to
    # changes nothing.  Each of the four outboxes (the start, prepare's and finance's
    # completions, the end) stood until a clear: four clears.  Legal's completion
    # publishes nothing.
    assert coordinator.written[RUNS] == 5 + 4
    # One lifecycle message per move (decision 17).
    assert sent_types(coordinator, "runs.events") == [
        "RunStarted", "StageCompleted", "StageCompleted", "RunCompleted"]
    assert sent_types(coordinator, "steps.dispatch") == ["StepRequested", "StepRequested"]
    assert sent_types(coordinator, "workitems.dispatch") == [
        "WorkItemRequested", "WorkItemRequested"]
    assert len(coordinator.publisher.sent) == 8


async def test_a_run_saved_again_before_the_clear_needs_none_but_for_its_last_outbox(
    coordinator: Coordinator,
) -> None:
    run_id = uuid.uuid4().hex
    await drive(coordinator, run_id, clear_between=False)
    run = await coordinator.handler.store.runs.find_one({"_id": run_id})
    assert run is not None and run["status"] == "completed" and run["outbox"] == []
    # Every save replaced the outbox before it: only the last one is cleared.
    assert coordinator.written[RUNS] == 5 + 1
    assert len(coordinator.publisher.sent) == 8


async def test_a_save_without_an_outbox_drops_the_clear_it_replaced(
    coordinator: Coordinator,
) -> None:
    run_id = uuid.uuid4().hex
    steps = inputs(run_id)
    for _, envelope in steps[:4]:  # started, prepared, both items assigned; no clear yet
        await coordinator.handler([envelope])
    coordinator.written.clear()
    await coordinator.handler([steps[4][1]])  # legal: changes the run, publishes nothing
    # Legal's save replaced prepare's outbox with none: no clear is left to send.
    assert await coordinator.handler.store.flush_clears() == 0
    assert coordinator.written[RUNS] == 1
    stored = await coordinator.handler.store.runs.find_one({"_id": run_id})
    assert stored is not None and stored["outbox"] == [] and "outbox_at" not in stored


async def test_a_late_outcome_for_a_finished_run_publishes_and_writes_nothing(
    coordinator: Coordinator,
) -> None:
    """A finished run leaves the cache; a message read before its last clear must not take
    the outbox this process published for a stop's leftover."""
    run_id = uuid.uuid4().hex
    steps = inputs(run_id)
    for _, envelope in steps:
        await coordinator.handler([envelope])
    assert run_id not in coordinator.handler.store.cache
    sent, written = len(coordinator.publisher.sent), coordinator.written[RUNS]
    again = new_event(StepCompleted(step="finance", attempt=1, completed_by="bob"),
                      producer="assignment", run_id=run_id)  # answered again: a new id
    await coordinator.handler([again])
    assert len(coordinator.publisher.sent) == sent
    assert coordinator.written[RUNS] == written
    assert await coordinator.handler.store.flush_clears() == 1  # the last outbox, once


async def test_the_participants_feed_waits_for_the_batch_in_flight(
    coordinator: Coordinator,
) -> None:
    """The feed and the outcomes consumer share the run cache: a feed batch that comes
    while an outcome's transition is saved but not yet published must not publish it too."""
    run_id = uuid.uuid4().hex
    steps = inputs(run_id)
    for _, envelope in steps[:5]:
        await coordinator.handler([envelope])
    late = new_event(WorkItemAssigned(work_item_id=f"{run_id}:finance", step="finance",
                                      assignee_kind="user", assignee="bob"),
                     producer="assignment", run_id=run_id)
    publish = coordinator.publisher.publish
    feeding: list[asyncio.Task[None]] = []

    async def feed_while_publishing(envelopes: Iterable[Envelope]) -> None:
        envelopes = list(envelopes)  # as the broker's client takes them, one by one
        if not feeding:  # finance's outbox, saved and on its way out
            feeding.append(asyncio.create_task(coordinator.feed([late])))
            for _ in range(5):
                await asyncio.sleep(0)  # the feed batch runs as far as it may
        await publish(envelopes)

    coordinator.publisher.publish = feed_while_publishing  # type: ignore[method-assign]
    await coordinator.handler([steps[5][1]])
    await feeding[0]
    assert sent_types(coordinator, "steps.dispatch") == ["StepRequested", "StepRequested"]
    assert sent_types(coordinator, "runs.events").count("StageCompleted") == 2
