"""Opening a work item: resolution, the first events, the planned timers."""

from __future__ import annotations

from datetime import timedelta

from assignment_builders import (
    DIRECTORY_DOCUMENT,
    DUE,
    LATER,
    NOW,
    accepted,
    given,
    open_command,
    rejected,
    request,
    types_of,
    when,
)

from contracts.events.steps import StepFailed
from contracts.events.workitems import Escalation, WorkItemAssigned, WorkItemAssignmentFailed
from services.assignment.core import (
    AssignWaiting,
    Cancel,
    Claim,
    Directory,
    Reassign,
    Rejection,
    Status,
    Timer,
    WorkItemOpened,
    apply,
)


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


def test_work_item_events_carry_how_to_reach_their_recipients() -> None:
    """Notification reads no directory: each recipient's contact travels on the event."""
    decision = accepted(None, open_command(request("group", "hr")), now=NOW)

    assigned = decision.events[1]
    assert isinstance(assigned, WorkItemAssigned)
    assert [c.model_dump() for c in assigned.contacts] == [
        {"user": "bob", "email": "bob@example.com", "chat_handle": None, "channels": ["email"]},
        {"user": "ann", "email": "ann@example.com", "chat_handle": "@ann",
         "channels": ["email", "chat"]},
    ]


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


def test_an_assignee_the_directory_cannot_resolve_waits_for_it() -> None:
    """Regression: the step failed (or, on a broken directory, the request was
    dead-lettered) and the run was stranded while the directory was being repaired."""
    decision = accepted(None, open_command(request("group", "nope")), now=NOW)

    assert types_of(decision) == ["WorkItemOpened", "WorkItemAssignmentFailed"]
    failed = decision.events[1]
    assert isinstance(failed, WorkItemAssignmentFailed) and failed.error == "unknown group 'nope'"
    assert decision.published == (failed,) and decision.timers == ()
    item = apply(None, decision, NOW)
    assert item is not None and item.status is Status.WAITING
    assert (item.assignee, item.waiting_reason) == ("", "unknown group 'nope'")
    assert rejected(item, Claim("ann")).code == "not_found"  # nobody's yet
    assert rejected(item, Claim("dave")).reason == "cannot claim a waiting work item"


def test_a_waiting_item_is_assigned_once_the_directory_names_someone() -> None:
    item = given(request("group", "nope", before=[600]))
    assert accepted(item, AssignWaiting(), now=LATER).events == ()  # same directory: waits on
    document = {**DIRECTORY_DOCUMENT,
                "groups": [*DIRECTORY_DOCUMENT["groups"], {"id": "nope", "members": ["bob"]}]}
    repaired = Directory.from_document(document, revision=2)

    decision = accepted(item, AssignWaiting(), now=LATER, directory=repaired)

    assert types_of(decision) == ["WorkItemAssigned"]
    assert [t.epoch for t in decision.timers] == [item.epoch + 1]
    assigned = apply(item, decision, LATER)
    assert assigned is not None and assigned.status is Status.OPEN
    assert (assigned.assignee_kind, assigned.assignee, assigned.waiting_reason) == (
        "group", "nope", "")
    assert accepted(assigned, AssignWaiting(), directory=repaired).events == ()


def test_a_record_without_the_named_field_still_fails_the_step() -> None:
    """No directory change can mend a record that names nobody."""
    decision = accepted(None, open_command(request("record_field", "record.owner",
                                                   record={"id": "42"})), now=NOW)

    assert types_of(decision) == ["WorkItemAssignmentFailed", "StepFailed"]
    step_failed = decision.events[1]
    assert isinstance(step_failed, StepFailed)
    assert (step_failed.step, step_failed.attempt, step_failed.retryable) == ("collect", 1, False)
    assert "record field 'owner' is missing" in step_failed.error
    assert apply(None, decision, NOW) is None  # no item exists


def test_a_waiting_item_can_be_reassigned_or_canceled() -> None:
    item = given(request("user", "zoe"))
    reassigned = apply(item, accepted(item, Reassign("dave", "user", "ann")), LATER)
    assert reassigned is not None and reassigned.status is Status.OPEN
    canceled = apply(item, accepted(item, Cancel(reason="the run was canceled")), LATER)
    assert canceled is not None and canceled.status is Status.CANCELED


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
