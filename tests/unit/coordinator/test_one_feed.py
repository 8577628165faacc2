"""The coordinator's one consumer over commands, steps.outcomes and workitems.events
(decision 20), as its process builds it: what each topic gives the handler, what is
dead-lettered, what is passed over; and a work item's completion as the step's outcome.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from contracts import Envelope, encode, headers_of, parse
from contracts.envelope import new_event
from contracts.events.commands import CancelRun
from contracts.events.steps import StepCompleted
from contracts.events.workitems import (
    WorkItemAssigned,
    WorkItemClaimed,
    WorkItemCompleted,
    WorkItemDelegated,
)
from services.stage_coordinator.__main__ import build
from services.stage_coordinator.handler import WORK_ITEM_TYPES, from_work_items
from shared.messaging import BatchConsumer

FIELDS = {"work_item_id": "r1:legal:1", "step": "legal", "actor": "alice"}
TOPICS = ("commands", "steps.outcomes", "workitems.events")


class Recorded:
    """The handler and the publisher (of dead letters) of the consumer under test."""

    def __init__(self) -> None:
        self.batches: list[list[Envelope]] = []
        self.dead: list[Envelope] = []

    async def handle(self, envelopes: list[Envelope]) -> None:
        self.batches.append(envelopes)

    async def publish(self, envelopes: Any) -> None:
        self.dead.extend(envelopes)

    def reasons(self) -> list[tuple[str, str]]:
        return [(d.payload.source_topic, d.payload.reason) for d in self.dead]


@pytest.fixture(scope="module")
def built() -> BatchConsumer:
    """The coordinator's consumer, built as its process builds it (nothing is contacted)."""
    runtime = build()
    (consumer,) = [c for c in runtime.consumers if "commands" in c.topics]
    return consumer


@pytest.fixture
def consumer(built: BatchConsumer, monkeypatch: pytest.MonkeyPatch) -> tuple[BatchConsumer,
                                                                          Recorded]:
    seen = Recorded()
    monkeypatch.setattr(built, "handler", seen.handle)
    monkeypatch.setattr(built, "publisher", seen)
    return built, seen


def message(payload: Any, run_id: str | None = "r1") -> Envelope:
    return new_event(payload, producer="test", run_id=run_id)


def record(topic: str, offset: int, value: bytes, headers: dict[str, str] | None) -> Any:
    return SimpleNamespace(topic=topic, partition=0, offset=offset, key=b"r1", value=value,
                           headers=[(k, v.encode()) for k, v in (headers or {}).items()])


def on(topic: str, offset: int, envelope: Envelope) -> Any:
    return record(topic, offset, encode(envelope), headers_of(envelope))


def test_one_group_reads_the_three_topics_and_takes_over_the_participants_offsets(
    built: BatchConsumer,
) -> None:
    assert built.topics == TOPICS and built.group_id == "stage-coordinator"
    assert built.takes_over == {"workitems.events": "stage-coordinator-participants"}
    assert built.intake("workitems.events").types == WORK_ITEM_TYPES
    assert built.intake("commands").types is None
    assert built.intake("steps.outcomes").types is None


@pytest.mark.parametrize("replicas", [1, 2, 3, 5])
def test_each_replica_holds_the_same_partitions_of_the_three_topics(
    built: BatchConsumer, replicas: int,
) -> None:
    """A run's messages are keyed alike on the three topics: one replica holds them all, so
    one batch loop and one run cache see all of a run (the group's first assignor)."""
    assignor = built.assignors[0]
    cluster = SimpleNamespace(partitions_for_topic=lambda topic: set(range(4)))
    members = {f"member-{i}": ConsumerProtocolMemberMetadata(0, list(TOPICS), b"")
               for i in range(replicas)}
    assigned = assignor.assign(cluster, members)  # type: ignore[arg-type]
    held = []
    for assignment in assigned.values():
        per_topic = dict(assignment.assignment)
        assert set(per_topic) <= set(TOPICS)
        partitions = {tuple(per_topic.get(topic, ())) for topic in TOPICS}
        assert len(partitions) == 1, per_topic  # the same partitions of each topic
        held.extend(partitions.pop())
    assert sorted(held) == [0, 1, 2, 3]
    assert built.assignors[-1].name == "roundrobin"  # what older members agree on


async def test_one_batch_carries_every_topics_messages_in_order(consumer: Any) -> None:
    built, seen = consumer
    cancel = message(CancelRun(requested_by="ops"))
    outcome = message(StepCompleted(step="prepare", attempt=1))
    assigned = message(WorkItemAssigned(**FIELDS, assignee_kind="user", assignee="alice"))
    done = message(WorkItemCompleted(**FIELDS, attempt=1, outputs={"ok": True}))
    await built.consume([on("commands", 0, cancel), on("steps.outcomes", 0, outcome),
                         on("workitems.events", 0, assigned),
                         on("workitems.events", 1, done)])

    (batch,) = seen.batches
    assert [(e.type, e.event_id) for e in batch] == [
        ("CancelRun", cancel.event_id), ("StepCompleted", outcome.event_id),
        ("WorkItemAssigned", assigned.event_id), ("StepCompleted", done.event_id)]
    assert seen.dead == []


async def test_on_workitems_events_only_completions_and_holders_are_parsed(
    consumer: Any,
) -> None:
    """The rest is passed over by its header, unparsed, and dead-lettered by no one here:
    the topic is assignment's, whose consumers check it.  A record without a type header is
    parsed, so nothing escapes the checks."""
    built, seen = consumer
    claimed = message(WorkItemClaimed(**FIELDS))
    await built.consume([
        on("workitems.events", 0, claimed),
        record("workitems.events", 1, b"{not json", {"type": "WorkItemCommented"}),
        record("workitems.events", 2, b"{not json", None),
        record("workitems.events", 3, encode(claimed), None),  # parsed, then passed over
    ])
    assert seen.batches == []
    assert [(topic, reason.split(":")[0]) for topic, reason in seen.reasons()] == [
        ("workitems.events", "unparseable")]
    assert seen.dead[0].payload.consumer_group == "stage-coordinator"


async def test_a_work_item_event_is_never_dead_lettered_as_not_handled(consumer: Any) -> None:
    """The coordinator takes or passes over what it reads on workitems.events (assignment
    owns that topic's checks); only its own topics keep the rule that a message names a
    run.  Without a run id, the contract refuses a message on any of the three topics, and
    the letter says so."""
    built, seen = consumer
    assert built.intake("workitems.events").accepts is None
    for topic in ("commands", "steps.outcomes"):
        accepts = built.intake(topic).accepts
        assert accepts is not None
        assert accepts(message(CancelRun())) and not accepts(message(CancelRun(), None))
    await built.consume([
        on("workitems.events", 0, message(WorkItemAssigned(**FIELDS, assignee="alice"), None)),
        on("workitems.events", 1, message(WorkItemCompleted(**FIELDS, attempt=1), None)),
        on("commands", 0, message(CancelRun(), None)),
        on("steps.outcomes", 0, message(StepCompleted(step="legal", attempt=1), None)),
    ])
    assert seen.batches == []
    assert [(topic, reason.split(" has ")[0]) for topic, reason in seen.reasons()] == [
        ("workitems.events", "unparseable: WorkItemAssigned"),
        ("workitems.events", "unparseable: WorkItemCompleted"),
        ("commands", "unparseable: CancelRun"),
        ("steps.outcomes", "unparseable: StepCompleted")]


async def test_commands_and_outcomes_parse_every_type_and_dead_letter_garbage(
    consumer: Any,
) -> None:
    """The work-item filter is workitems.events' alone: on the coordinator's own topics a
    claim is parsed and handed over as it is (the core ignores it), and garbage labelled as
    a type the feed skips is still dead-lettered."""
    built, seen = consumer
    misplaced = message(WorkItemClaimed(**FIELDS))
    await built.consume([
        on("commands", 0, misplaced),
        record("steps.outcomes", 0, b"{not json", {"type": "WorkItemClaimed"}),
    ])
    (batch,) = seen.batches
    assert [(e.type, e.event_id) for e in batch] == [("WorkItemClaimed", misplaced.event_id)]
    assert [(topic, reason.split(":")[0]) for topic, reason in seen.reasons()] == [
        ("steps.outcomes", "unparseable")]


async def test_a_redelivered_completion_is_the_same_outcome(consumer: Any) -> None:
    """A batch read again (a stop before the commit) gives the handler the same event ids:
    the run's ``applied`` list drops the repeat."""
    built, seen = consumer
    done = message(WorkItemCompleted(**FIELDS, attempt=1))
    await built.consume([on("workitems.events", 7, done)])
    await built.consume([on("workitems.events", 7, done)])
    first, again = seen.batches
    assert first == again and first[0].event_id == done.event_id


def test_a_completion_becomes_the_steps_outcome_with_its_event_id() -> None:
    done = message(WorkItemCompleted(**FIELDS, attempt=1, outputs={"ok": True},
                                     decision="approved", comment="fine"))
    outcome = from_work_items(done)
    assert outcome is not None
    assert outcome.event_id == done.event_id and outcome.run_id == "r1"
    assert outcome.payload == StepCompleted(step="legal", attempt=1, outputs={"ok": True},
                                            completed_by="alice", decision="approved",
                                            comment="fine")
    assert parse(encode(outcome)) == outcome  # a well-formed envelope of its own


def test_holders_are_taken_as_they_are_and_claims_not_at_all() -> None:
    delegated = message(WorkItemDelegated(**FIELDS, delegate="carol"))
    assert from_work_items(delegated) is delegated
    assert from_work_items(message(WorkItemClaimed(**FIELDS))) is None


def test_a_version_2_completion_is_no_outcome() -> None:
    """Its StepCompleted came on steps.outcomes: taking it twice would change nothing, but a
    v2 completion names no attempt."""
    data = json.loads(encode(message(WorkItemCompleted(**FIELDS, attempt=1))))
    data["schema_version"] = 2
    del data["payload"]["attempt"], data["payload"]["outputs"]
    old = parse(json.dumps(data).encode())
    assert isinstance(old.payload, WorkItemCompleted) and old.payload.attempt == 0
    assert from_work_items(old) is None


def test_the_consumer_parses_only_completions_and_assignments() -> None:
    assert "WorkItemCompleted" in WORK_ITEM_TYPES and "WorkItemAssigned" in WORK_ITEM_TYPES
    assert not WORK_ITEM_TYPES & {"WorkItemClaimed", "WorkItemCommented", "WorkItemReminderDue"}
