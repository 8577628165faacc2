"""The coordinator passes over a holder event whose holders its cached run knows, unparsed
(decision 40); anything it cannot tell so from the cache is parsed and decided as before."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from coordinator_builders import Story, definition, start
from prometheus_client import CollectorRegistry

from contracts import Envelope, encode, headers_of
from contracts.envelope import new_event
from contracts.events.workitems import (
    WorkItemAssigned,
    WorkItemCompleted,
    WorkItemDelegated,
)
from services.stage_coordinator.__main__ import build
from services.stage_coordinator.store import RunStore, StoredRun
from shared.messaging import BatchConsumer

TOPIC = "workitems.events"
REVIEW = definition(
    """
name: test
stages:
  - name: review
    steps:
      - {name: legal, kind: interactive, assignee: {user: alice}}
"""
)


class Recorded:
    def __init__(self) -> None:
        self.handled: list[Envelope] = []
        self.dead: list[Envelope] = []

    async def handle(self, envelopes: list[Envelope]) -> None:
        self.handled.extend(envelopes)

    async def publish(self, envelopes: Any) -> None:
        self.dead.extend(envelopes)


@pytest.fixture
def coordinator(monkeypatch: pytest.MonkeyPatch) -> tuple[BatchConsumer, RunStore, Recorded]:
    """The coordinator's consumer as its process builds it, its run store, and what its
    handler was given (nothing is contacted)."""
    runtime = build()
    (consumer,) = [c for c in runtime.consumers if TOPIC in c.topics]
    store = consumer.handler.store
    seen = Recorded()
    monkeypatch.setattr(consumer, "handler", seen.handle)
    monkeypatch.setattr(consumer, "publisher", seen)
    story = Story(REVIEW, run_id="r1")
    story.when(start())
    store.remember(StoredRun(run=story.state))
    assert list(story.state.participants) == ["user:ann", "user:alice"]
    return consumer, store, seen


def record(offset: int, value: bytes, headers: dict[str, str], key: bytes = b"r1") -> Any:
    return SimpleNamespace(topic=TOPIC, partition=0, offset=offset, key=key, value=value,
                           headers=[(k, v.encode()) for k, v in headers.items()])


def on(offset: int, payload: Any, run_id: str = "r1") -> Any:
    envelope = new_event(payload, producer="assignment", run_id=run_id)
    return record(offset, encode(envelope), headers_of(envelope), run_id.encode())


def assigned(who: str, kind: str = "user") -> WorkItemAssigned:
    return WorkItemAssigned(work_item_id="r1:legal:1", step="legal", assignee_kind=kind,
                            assignee=who, recipients=[who])


def passed_over(consumer: BatchConsumer) -> float:
    registry: CollectorRegistry = consumer.metrics.registry
    return registry.get_sample_value("baton_messages_passed_over_total",
                                     {"service": "stage-coordinator", "topic": TOPIC}) or 0


async def test_a_holder_event_naming_a_known_participant_is_not_parsed(
        coordinator: tuple[BatchConsumer, RunStore, Recorded]) -> None:
    consumer, _, seen = coordinator
    known = on(0, assigned("alice"))
    # A malformed body with the header of a known holder: passed over unparsed, as the
    # ``types`` filter passes over other types (notification checks and dead-letters it).
    malformed = record(1, b"{not json", {"type": "WorkItemAssigned", "holders": "user:alice"})
    await consumer.consume([known, malformed])

    assert seen.handled == [] and seen.dead == []
    assert passed_over(consumer) == 2


async def test_anything_the_cache_cannot_tell_is_parsed_and_handed_to_the_handler(
        coordinator: tuple[BatchConsumer, RunStore, Recorded]) -> None:
    consumer, _, seen = coordinator
    new_holder = on(0, assigned("zed"))
    delegated = on(1, WorkItemDelegated(work_item_id="r1:legal:1", step="legal",
                                        assignee_kind="user", assignee="alice", delegate="dev"))
    uncached = on(2, assigned("alice"), run_id="r2")
    older = on(3, assigned("alice"))
    older.headers = [(k, v) for k, v in older.headers if k != "holders"]  # an older producer
    forged = on(4, WorkItemCompleted(work_item_id="r1:legal:1", step="legal", actor="alice",
                                     attempt=1))
    forged.headers.append(("holders", b"user:alice"))  # only holder types are passed over
    await consumer.consume([new_holder, delegated, uncached, older, forged])

    assert [e.type for e in seen.handled] == [
        "WorkItemAssigned", "WorkItemDelegated", "WorkItemAssigned", "WorkItemAssigned",
        "StepCompleted"]
    assert seen.dead == []
    assert passed_over(consumer) == 0


async def test_a_holder_the_cached_run_took_in_since_is_passed_over(
        coordinator: tuple[BatchConsumer, RunStore, Recorded]) -> None:
    consumer, store, seen = coordinator
    await consumer.consume([on(0, assigned("legal", kind="group"))])
    assert len(seen.handled) == 1  # new: the handler records them
    story = Story(REVIEW, run_id="r1")
    story.when(start())
    story.when(assigned("legal", kind="group"))
    store.remember(StoredRun(run=story.state))
    await consumer.consume([on(1, assigned("legal", kind="group"))])
    assert len(seen.handled) == 1 and passed_over(consumer) == 1
