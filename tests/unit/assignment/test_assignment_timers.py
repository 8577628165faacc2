"""Reminders and escalations: timers with epochs, so a late one does nothing."""

from __future__ import annotations

from datetime import timedelta

from assignment_builders import (
    DIRECTORY_DOCUMENT,
    DUE,
    accepted,
    given,
    rejected,
    request,
    then,
    types_of,
)

from contracts.events.workitems import (
    Escalation,
    WorkItemEscalated,
    WorkItemReminderDue,
    WorkItemRequested,
)
from services.assignment.core import (
    Claim,
    Complete,
    Decision,
    Delegate,
    Escalate,
    FireReminder,
    Reassign,
    Status,
    Timer,
)
from services.assignment.core.directory import Directory

AFTER_DUE = DUE + timedelta(hours=2)


def escalating(
    action: str, group: str | None = None, kind: str = "user", value: str = "ann"
) -> WorkItemRequested:
    escalation = Escalation(after_due_seconds=3600, action=action, group=group)
    return request(kind, value, after=[7200], escalation=escalation)


def test_a_reminder_reaches_the_people_the_item_is_with() -> None:
    item = given(request("user", "ann"), Delegate("ann", "gary"))

    decision = accepted(item, FireReminder(epoch=1, overdue=True))

    reminder = decision.events[0]
    assert isinstance(reminder, WorkItemReminderDue)
    assert (reminder.overdue, reminder.recipients, reminder.actor) == (
        True,
        ["ann", "gary"],
        "system",
    )
    entry = then(item, decision).history[-1]
    assert (entry.action, entry.actor, entry.field) == ("remind", "system", None)


def test_a_reminder_for_an_unclaimed_group_item_reaches_the_pool() -> None:
    item = given(request("group", "hr"))

    reminder = accepted(item, FireReminder(epoch=1)).events[0]

    assert isinstance(reminder, WorkItemReminderDue) and reminder.recipients == ["bob", "ann"]


def test_a_reminder_of_an_earlier_assignment_does_nothing() -> None:
    item = given(request("user", "ann"), Reassign("dave", "user", "bob"))

    assert item.epoch == 2
    assert accepted(item, FireReminder(epoch=1)) == Decision()
    assert accepted(item, Escalate(epoch=1)) == Decision()


def test_timers_of_a_finished_item_do_nothing() -> None:
    item = given(escalating("notify"), Complete("ann", {}))

    assert accepted(item, FireReminder(epoch=item.epoch)) == Decision()
    assert accepted(item, Escalate(epoch=item.epoch)) == Decision()


def test_timers_of_an_item_that_does_not_exist_do_nothing() -> None:
    assert accepted(None, FireReminder(epoch=1)) == Decision()
    assert accepted(None, Escalate(epoch=1)) == Decision()


def test_an_item_without_an_escalation_ignores_an_escalation_timer() -> None:
    item = given(request("user", "ann"))

    assert accepted(item, Escalate(epoch=1)) == Decision()


def test_escalating_to_the_manager_of_the_user_assignee() -> None:
    item = given(escalating("reassign_to_manager"))

    decision = accepted(item, Escalate(epoch=1), now=AFTER_DUE - timedelta(hours=1))

    escalated = decision.events[0]
    assert isinstance(escalated, WorkItemEscalated)
    assert (escalated.action, escalated.previous_assignee, escalated.assignee) == (
        "reassign_to_manager",
        "ann",
        "carol",
    )
    assert escalated.recipients == ["carol"]
    # The overdue reminder is replanned for the new assignee; no second escalation.
    assert decision.timers == (Timer("wi-1", "reminder", AFTER_DUE, 2, overdue=True),)
    after = then(item, decision)
    assert (after.assignee, after.epoch, after.escalated, after.status) == (
        "carol",
        2,
        True,
        Status.OPEN,
    )


def test_escalating_a_claimed_group_item_goes_to_the_claimers_manager() -> None:
    item = given(escalating("reassign_to_manager", kind="group", value="hr"), Claim("ann"))

    after = then(item, accepted(item, Escalate(epoch=1)))

    assert (after.assignee_kind, after.assignee, after.claimed_by, after.status) == (
        "user",
        "carol",
        None,
        Status.OPEN,
    )


def test_an_unclaimed_group_item_has_no_manager_to_escalate_to() -> None:
    item = given(escalating("reassign_to_manager", kind="group", value="hr"))

    rejection = rejected(item, Escalate(epoch=1))

    assert (rejection.code, rejection.reason) == (
        "conflict",
        "group 'hr' is unclaimed: no manager to escalate to",
    )


def test_escalating_when_the_owner_has_no_manager_is_a_rejection() -> None:
    item = given(escalating("reassign_to_manager", value="dave"))

    assert rejected(item, Escalate(epoch=1)).reason == "user 'dave' has no manager"


def test_releasing_to_a_group_reopens_the_item_for_the_group() -> None:
    item = given(
        escalating("release_to_group", group="hr", kind="queue", value="it"), Claim("gary")
    )

    decision = accepted(item, Escalate(epoch=1))

    escalated = decision.events[0]
    assert isinstance(escalated, WorkItemEscalated)
    assert (escalated.assignee_kind, escalated.assignee, escalated.recipients) == (
        "group",
        "hr",
        ["bob", "ann"],
    )
    after = then(item, decision)
    assert (after.status, after.assignee_kind, after.assignee, after.claimed_by) == (
        Status.OPEN,
        "group",
        "hr",
        None,
    )


def test_releasing_to_no_group_or_an_unknown_one_is_a_rejection() -> None:
    assert rejected(given(escalating("release_to_group")), Escalate(1)).code == "invalid"
    unknown = given(escalating("release_to_group", group="nope"))
    assert rejected(unknown, Escalate(1)).reason == "unknown group 'nope'"


def test_notify_only_tells_the_owner_and_their_manager() -> None:
    item = given(escalating("notify"))

    decision = accepted(item, Escalate(epoch=1))

    assert types_of(decision) == ["WorkItemEscalated"]
    escalated = decision.events[0]
    assert isinstance(escalated, WorkItemEscalated)
    assert (escalated.action, escalated.assignee, escalated.recipients) == (
        "notify",
        "ann",
        ["ann", "carol"],
    )
    assert decision.timers == ()
    after = then(item, decision)
    assert (after.assignee, after.epoch, after.escalated) == ("ann", 1, True)


def test_an_escalation_fires_once_even_when_its_timer_is_delivered_twice() -> None:
    item = given(escalating("notify"))
    item = then(item, accepted(item, Escalate(epoch=1)))

    assert accepted(item, Escalate(epoch=1)) == Decision()


def test_an_escalated_manager_who_is_out_of_office_is_covered_by_their_delegate() -> None:
    document = {
        **DIRECTORY_DOCUMENT,
        "users": [
            {**u, "out_of_office": True, "delegate": "dave"} if u["id"] == "carol" else u
            for u in DIRECTORY_DOCUMENT["users"]
        ],
    }
    directory = Directory.from_document(document)
    item = given(escalating("reassign_to_manager"), directory=directory)

    escalated = accepted(item, Escalate(epoch=1), directory=directory).events[0]

    assert isinstance(escalated, WorkItemEscalated) and escalated.assignee == "dave"
