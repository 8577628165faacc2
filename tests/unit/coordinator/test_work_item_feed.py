"""workitems.events into the coordinator: a completion is the interactive step's outcome."""

from __future__ import annotations

import json
from typing import Any

from contracts import Envelope, encode, parse
from contracts.envelope import new_event
from contracts.events.steps import StepCompleted
from contracts.events.workitems import WorkItemAssigned, WorkItemClaimed, WorkItemCompleted
from services.stage_coordinator.handler import WORK_ITEM_TYPES, WorkItemFeed


class Recorded:
    def __init__(self) -> None:
        self.batches: list[list[Envelope]] = []

    async def __call__(self, envelopes: list[Envelope]) -> None:
        self.batches.append(envelopes)


def item_event(payload: Any) -> Envelope:
    return new_event(payload, producer="assignment", run_id="r1")


FIELDS = {"work_item_id": "r1:legal:1", "step": "legal", "actor": "alice"}


async def test_a_completion_becomes_the_steps_outcome_with_its_event_id() -> None:
    seen = Recorded()
    done = item_event(WorkItemCompleted(**FIELDS, attempt=1, outputs={"ok": True},
                                        decision="approved", comment="fine"))
    assigned = item_event(WorkItemAssigned(**FIELDS, assignee="alice"))
    claimed = item_event(WorkItemClaimed(**FIELDS))
    await WorkItemFeed(seen)([assigned, claimed, done])  # type: ignore[arg-type]

    (batch,) = seen.batches
    assert [e.type for e in batch] == ["WorkItemAssigned", "StepCompleted"]  # no claim
    outcome = batch[1]
    assert outcome.event_id == done.event_id and outcome.run_id == "r1"
    assert outcome.payload == StepCompleted(step="legal", attempt=1, outputs={"ok": True},
                                            completed_by="alice", decision="approved",
                                            comment="fine")
    assert parse(encode(outcome)) == outcome  # a well-formed envelope of its own


async def test_a_version_2_completion_is_no_outcome() -> None:
    """Its StepCompleted came on steps.outcomes: taking it twice would change nothing, but a
    v2 completion names no attempt."""
    seen = Recorded()
    data = json.loads(encode(item_event(WorkItemCompleted(**FIELDS, attempt=1))))
    data["schema_version"] = 2
    del data["payload"]["attempt"], data["payload"]["outputs"]
    old = parse(json.dumps(data).encode())
    assert isinstance(old.payload, WorkItemCompleted) and old.payload.attempt == 0
    await WorkItemFeed(seen)([old])  # type: ignore[arg-type]
    assert seen.batches == []


def test_the_consumer_parses_only_completions_and_assignments() -> None:
    assert "WorkItemCompleted" in WORK_ITEM_TYPES and "WorkItemAssigned" in WORK_ITEM_TYPES
    assert not WORK_ITEM_TYPES & {"WorkItemClaimed", "WorkItemCommented", "WorkItemReminderDue"}
