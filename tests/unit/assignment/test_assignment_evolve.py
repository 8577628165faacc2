"""evolve: the only code that changes a work item, with an audit trail of old and new."""

from __future__ import annotations

import pytest
from assignment_builders import LATER, NOW, accepted, given, open_command, request

from contracts.events.workitems import WorkItemClaimed, WorkItemCommented
from services.assignment.core import (
    AuditEntry,
    Claim,
    Complete,
    InvalidEvent,
    Status,
    evolve,
    replay,
)
from services.assignment.core.workitem import next_status


def test_each_changed_field_is_written_with_its_old_and_new_value() -> None:
    item = given(request("group", "hr"), Claim("ann"))

    assert item.history[-2:] == (
        AuditEntry(
            at=LATER, actor="ann", action="claim", field="status", old="open", new="claimed"
        ),
        AuditEntry(at=LATER, actor="ann", action="claim", field="claimed_by", old=None, new="ann"),
    )
    assert item.updated_at == LATER and item.created_at == NOW


def test_replaying_the_events_gives_the_same_item() -> None:
    opened = accepted(None, open_command(request("group", "hr")), now=NOW)
    item = given(request("group", "hr"))
    completed = accepted(item, Complete("ann", {}))

    rebuilt = replay(
        [(event, NOW) for event in opened.events] + [(event, LATER) for event in completed.events]
    )

    assert rebuilt is not None
    assert rebuilt.status is Status.COMPLETED
    assert rebuilt == given(request("group", "hr"), Complete("ann", {}))


def test_an_event_the_table_does_not_allow_is_a_bug_and_raises() -> None:
    item = given(request("group", "hr"), Complete("ann", {}))

    with pytest.raises(InvalidEvent, match="cannot claim a completed work item"):
        evolve(item, WorkItemClaimed(work_item_id=item.id, step=item.step, actor="bob"), LATER)


def test_an_event_before_the_item_exists_raises() -> None:
    with pytest.raises(InvalidEvent):
        evolve(None, WorkItemCommented(work_item_id="wi-1", step="collect", comment="hi"), NOW)


def test_opening_twice_raises() -> None:
    item = given()
    opened = accepted(None, open_command(), now=NOW).events[0]

    with pytest.raises(InvalidEvent, match="already open"):
        evolve(item, opened, NOW)


def test_the_transition_table_names_the_move_it_refuses() -> None:
    refused = next_status(Status.COMPLETED, "claim")
    assert not isinstance(refused, Status)
    assert refused.reason == "cannot claim a completed work item"
    assert next_status(Status.CLAIMED, "release") is Status.OPEN
