"""Each step runs in its own task: a slow action delays no other step, and nothing is lost.

Handler and consumer on in-memory fakes (a store, a publisher, a Kafka client that records
commits).  Progress is counted in event-loop turns, never timed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from contracts import Envelope, encode, parse
from contracts.envelope import new_event
from contracts.events.records import RecordUpdateRequested
from contracts.events.steps import StepCompleted, StepRequested
from services.step_runner.actions import ActionContext, ActionResult
from services.step_runner.actions.basic import PublishRecordUpdate
from services.step_runner.attempts import MemoryAttempts
from services.step_runner.consumer import StepConsumer
from services.step_runner.handler import StepHandler
from shared.metrics import ServiceMetrics
from shared.settings import ServiceSettings

TP = TopicPartition("steps.dispatch", 0)


@dataclass
class Counting:
    """An action that counts its runs; with a gate, it waits for the gate to open."""

    gate: asyncio.Event | None = None
    runs: int = 0

    async def run(self, inputs: dict[str, Any], context: ActionContext) -> ActionResult:
        self.runs += 1
        if self.gate is not None:
            await self.gate.wait()
        return ActionResult(outputs={"run": context.run_id})


@dataclass
class Published:
    envelopes: list[Envelope] = field(default_factory=list)

    async def publish(self, envelopes: Any) -> None:
        self.envelopes.extend(envelopes)

    async def send(self, messages: Any) -> None:
        """Messages encoded already, as a consumer reads them."""
        self.envelopes.extend(parse(message.value) for message in messages)

    def outcomes(self) -> dict[str, Envelope]:
        """The step outcomes published, by run."""
        return {e.run_id or "": e for e in self.envelopes if isinstance(e.payload, StepCompleted)}


@dataclass
class Kafka:
    """The consumer's Kafka client: what it committed and where it was told to seek."""

    commits: list[dict[TopicPartition, int]] = field(default_factory=list)

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        raise AssertionError("nothing failed: no rewind expected")

    @property
    def committed(self) -> int | None:
        return self.commits[-1][TP] if self.commits else None


def dispatch(run_id: str, action: str, record_key: str | None = None,
             **inputs: Any) -> Envelope:
    request = StepRequested(orchestration="o", version=1, stage="s", step="call", attempt=1,
                            action=action, inputs=inputs, idempotency_key=f"{run_id}:call:1",
                            operation_key=f"{run_id}:call:visit-1", record_key=record_key)
    return new_event(request, producer="stage-coordinator", run_id=run_id)


def record(offset: int, envelope: Envelope) -> Any:
    return SimpleNamespace(topic=TP.topic, partition=TP.partition, offset=offset,
                           key=envelope.partition_key.encode(), value=encode(envelope),
                           headers=[])


async def settle(turns: int = 200) -> None:
    """Let every task that can make progress make it (fakes never wait on anything else)."""
    for _ in range(turns):
        await asyncio.sleep(0)


def runner(store: MemoryAttempts, published: Published, **actions: Any) -> StepHandler:
    return StepHandler(store, actions, published, CollectorRegistry(),  # type: ignore[arg-type]
                       concurrency=8)


def consumer_of(handler: StepHandler, kafka: Kafka) -> StepConsumer:
    registry = CollectorRegistry()
    consumer = StepConsumer(
        topics=(TP.topic,), group_id="step-runner", handler=handler,
        publisher=handler.publisher, metrics=ServiceMetrics(registry, "step-runner"),
        settings=ServiceSettings(consumer_commit_seconds=0),  # which offsets, not when
    )
    consumer.subscriber = SimpleNamespace(consumer=kafka)
    return consumer


async def test_a_blocked_step_delays_no_other_step_of_its_batch_or_later_ones() -> None:
    """Regression: a batch was gathered whole, so one slow call (a 20 s http request)
    delayed every step of the next batches by as long."""
    gate = asyncio.Event()
    slow, quick = Counting(gate), Counting()
    store, published = MemoryAttempts(), Published()
    handler = runner(store, published, slow=slow, quick=quick)

    first = await handler.accept([dispatch("r1", "slow"), dispatch("r2", "quick"),
                                  dispatch("r3", "quick")])
    later = await handler.accept([dispatch("r4", "quick"), dispatch("r5", "quick")])
    await settle()

    assert set(published.outcomes()) == {"r2", "r3", "r4", "r5"}
    assert all(f.done() for f in [*first[1:], *later]) and not first[0].done()
    assert set(store.documents) == {"r2:call:1", "r3:call:1", "r4:call:1", "r5:call:1"}
    assert store.writes <= 2  # outcomes finished together are stored together

    gate.set()
    await settle()
    assert first[0].done() and "r1" in published.outcomes()
    assert (slow.runs, quick.runs) == (1, 4)


async def test_offsets_stop_at_a_running_step_and_a_crash_runs_it_again_and_nothing_else() -> None:
    """Offsets are committed only below the first step whose outcome is not stored; after a
    crash the redelivered steps that were stored are re-published, never re-run."""
    gate = asyncio.Event()
    slow, quick = Counting(gate), Counting()
    store, before, kafka = MemoryAttempts(), Published(), Kafka()
    crashed = runner(store, before, slow=slow, quick=quick)
    consumer = consumer_of(crashed, kafka)
    log = [record(10, dispatch("r1", "slow")), record(11, dispatch("r2", "quick")),
           record(12, dispatch("r3", "quick")), record(13, dispatch("r4", "quick"))]

    await consumer.consume(log[:3])
    await consumer.consume(log[3:])
    await settle()
    assert set(before.outcomes()) == {"r2", "r3", "r4"}
    assert kafka.committed == 10  # not past r1, whose outcome is not stored
    await crashed.stop()  # the process dies while r1 runs
    assert "r1:call:1" not in store.documents

    after, replacement = Published(), Kafka()
    gate.set()
    restarted = consumer_of(runner(store, after, slow=slow, quick=quick), replacement)
    await restarted.consume(log)  # redelivered from the committed offset
    await settle()

    assert (slow.runs, quick.runs) == (2, 3)  # r1 ran again; r2..r4 were not re-run
    assert set(after.outcomes()) == {"r1", "r2", "r3", "r4"}
    for run in ("r2", "r3", "r4"):  # the stored outcome, the same message as before
        assert after.outcomes()[run] == before.outcomes()[run]
    assert set(store.documents) == {f"r{i}:call:1" for i in range(1, 5)}
    assert replacement.committed == 14


async def test_a_dispatch_delivered_twice_while_it_runs_starts_one_attempt() -> None:
    gate = asyncio.Event()
    slow = Counting(gate)
    store, published = MemoryAttempts(), Published()
    handler = runner(store, published, slow=slow)
    request = dispatch("r1", "slow")

    (first,) = await handler.accept([request])
    (again,) = await handler.accept([request])  # a re-sent dispatch, the same attempt
    gate.set()
    await settle()

    assert slow.runs == 1 and first.done() and again.done()
    assert len([e for e in published.envelopes if isinstance(e.payload, StepCompleted)]) == 1


async def test_the_record_of_the_run_comes_with_the_dispatch() -> None:
    """The step-runner reads no run document: publish_record_update defaults to the
    record named in the dispatch."""
    store, published = MemoryAttempts(), Published()
    handler = runner(store, published, publish_record_update=PublishRecordUpdate())
    await handler([dispatch("r1", "publish_record_update", record_key="Employee:E-1",
                            fields={"status": "Onboarded"})])

    (update,) = [e.payload for e in published.envelopes
                 if isinstance(e.payload, RecordUpdateRequested)]
    assert (update.object_type, update.record_id) == ("Employee", "E-1")
    assert store.reads == 0 and store.writes == 0  # replayable: nothing stored


@dataclass
class Replayable(Counting):
    replayable = True


async def test_a_replayable_step_stores_nothing_and_a_redelivery_sends_the_same_outcome() -> None:
    """Steps without side effects (noop, set_variables, ...) cost the store nothing: a
    redelivered dispatch runs again and its outcome has the same event id, which the run
    drops as a repeat."""
    pure, effect = Replayable(), Counting()
    store, published = MemoryAttempts(), Published()
    handler = runner(store, published, pure=pure, effect=effect)

    batch = [dispatch("r1", "pure"), dispatch("r2", "effect")]
    await handler(batch)
    first = published.outcomes()
    await handler(batch)  # both redelivered

    assert set(store.documents) == {"r2:call:1"}  # only the step with an effect
    assert (pure.runs, effect.runs) == (2, 1)  # the pure one ran again, the other did not
    again = published.outcomes()
    assert again["r1"].event_id == first["r1"].event_id
    assert again["r1"].payload == first["r1"].payload
    assert again["r2"] == first["r2"]  # the stored outcome, re-published


def test_the_built_in_actions_without_side_effects_are_replayable() -> None:
    from services.step_runner.actions import load_actions, replayable
    from services.step_runner.actions.http import HttpAction

    actions = load_actions()
    assert {name for name, action in actions.items() if replayable(action)} >= {
        "noop", "set_variables", "publish_record_update"}
    assert not replayable(actions["http"]) and isinstance(actions["http"], HttpAction)
