"""Opening a work item: resolution, the first events, the planned timers."""

from __future__ import annotations

from datetime import timedelta

from assignment_builders import (
    DUE,
    NOW,
    accepted,
    given,
    open_command,
    request,
    types_of,
    when,
)

from contracts.events.steps import StepFailed
from contracts.events.workitems import Escalation, WorkItemAssigned, WorkItemAssignmentFailed
from services.assignment.core import Claim, Rejection, Status, Timer, WorkItemOpened, apply


def test_opening_assigns_the_item_and_announces_it() -> None:
    decision = accepted(None, open_command(request("group", "hr")), now=NOW)

    assert types_of(decision) == ["WorkItemOpened", "WorkItemAssigned"]
    assigned = decision.events[1]
    assert isinstance(assigned, WorkItemAssigned)
    assert (assigned.work_item_id, assigned.assignee_kind, assigned.assignee) == (
        "wi-1",
        "group",
        "hr",
    )
    assert assigned.recipients == ["bob", "ann"]
    assert assigned.due_at == DUE
    assert decision.published == (assigned,)  # the core-only event never leaves


def test_the_opened_item_holds_the_request_and_is_open() -> None:
    item = given(request("user", "ann", record={"id": "42", "owner": "bob"}))

    assert item.status is Status.OPEN
    assert (item.id, item.run_id, item.orchestration, item.version) == (
        "wi-1",
        "run-1",
        "onboarding",
        3,
    )
    assert (item.stage, item.step, item.attempt, item.kind) == ("hr", "collect", 1, "interactive")
    assert (item.assignee_kind, item.assignee, item.recipients) == ("user", "ann", ("ann",))
    assert item.record == {"id": "42", "owner": "bob"}
    assert item.created_at == item.updated_at == NOW
    assert item.epoch == 1
    assert [(e.action, e.field) for e in item.history][:2] == [
        ("open", "status"),
        ("assign", "assignee_kind"),
    ]


def test_an_out_of_office_assignee_hands_the_item_to_their_delegate() -> None:
    item = given(request("user", "erin"))

    assert (item.assignee, item.delegated_from) == ("frank", "erin")


def test_reminders_and_the_escalation_are_planned_from_the_due_date() -> None:
    req = request(before=[3600], after=[0, 86400], escalation=Escalation(after_due_seconds=7200))

    decision = accepted(None, open_command(req), now=NOW)

    hour, day = timedelta(hours=1), timedelta(days=1)
    assert decision.timers == (
        Timer("wi-1", "reminder", DUE - hour, 1),
        Timer("wi-1", "reminder", DUE, 1, overdue=True),
        Timer("wi-1", "escalation", DUE + 2 * hour, 1),
        Timer("wi-1", "reminder", DUE + day, 1, overdue=True),
    )


def test_times_already_past_are_not_planned() -> None:
    req = request(due_at=NOW + timedelta(minutes=30), before=[3600, 600])

    decision = accepted(None, open_command(req), now=NOW)

    assert [t.due_at for t in decision.timers] == [NOW + timedelta(minutes=20)]


def test_no_due_date_means_no_timers() -> None:
    decision = accepted(None, open_command(request(due_at=None, before=[60])), now=NOW)

    assert decision.timers == ()


def test_an_unresolvable_assignee_fails_the_step_visibly() -> None:
    decision = accepted(None, open_command(request("group", "nope")), now=NOW)

    assert types_of(decision) == ["WorkItemAssignmentFailed", "StepFailed"]
    failed, step_failed = decision.events
    assert isinstance(failed, WorkItemAssignmentFailed) and failed.error == "unknown group 'nope'"
    assert isinstance(step_failed, StepFailed)
    assert (step_failed.step, step_failed.attempt, step_failed.retryable) == ("collect", 1, False)
    assert "unknown group 'nope'" in step_failed.error
    assert apply(None, decision, NOW) is None  # no item exists


def test_a_redelivered_request_for_an_existing_item_decides_nothing() -> None:
    item = given()

    assert accepted(item, open_command()).events == ()


def test_a_command_for_a_missing_item_is_not_found() -> None:
    result = when(None, Claim("ann"))

    assert isinstance(result, Rejection) and result.code == "not_found"


def test_the_opened_event_carries_the_whole_request() -> None:
    req = request()

    opened = accepted(None, open_command(req), now=NOW).events[0]

    assert opened == WorkItemOpened("wi-1", "run-1", req, None)
