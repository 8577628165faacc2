"""Reassigning, delegating, commenting on and canceling a work item."""

from __future__ import annotations

from datetime import timedelta

from assignment_builders import (
    DIRECTORY,
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
    WorkItemCanceled,
    WorkItemCommented,
    WorkItemDelegated,
    WorkItemReassigned,
)
from services.assignment.core import (
    Cancel,
    Claim,
    Comment,
    Complete,
    Delegate,
    Escalate,
    Reassign,
    Release,
    Status,
    Timer,
    can_see,
)


def test_an_admin_reassigns_to_another_user() -> None:
    item = given(request("group", "hr", before=[3600]), Claim("ann"))

    decision = accepted(item, Reassign("dave", "user", "gary", "ann is busy"))

    reassigned = decision.events[0]
    assert isinstance(reassigned, WorkItemReassigned)
    assert (reassigned.assignee_kind, reassigned.assignee, reassigned.recipients) == (
        "user",
        "gary",
        ["gary"],
    )
    assert (reassigned.previous_assignee, reassigned.reason, reassigned.actor) == (
        "hr",
        "ann is busy",
        "dave",
    )
    assert decision.timers == (Timer("wi-1", "reminder", DUE - timedelta(hours=1), 2),)
    after = then(item, decision)
    assert (after.status, after.assignee_kind, after.assignee, after.claimed_by, after.epoch) == (
        Status.OPEN,
        "user",
        "gary",
        None,
        2,
    )
    changes = {e.field: (e.old, e.new) for e in after.history if e.action == "reassign"}
    assert changes["assignee"] == ("hr", "gary")
    assert changes["claimed_by"] == ("ann", None)


def test_an_admin_reassigns_to_a_queue() -> None:
    item = given(request("user", "ann"))

    after = then(item, accepted(item, Reassign("dave", "queue", "it")))

    assert (after.assignee_kind, after.assignee, after.recipients) == (
        "queue",
        "it",
        ("gary", "frank"),
    )


def test_reassigning_to_an_out_of_office_user_reaches_their_delegate() -> None:
    item = given(request("user", "ann"))

    reassigned = accepted(item, Reassign("dave", "user", "erin", "coverage")).events[0]

    assert isinstance(reassigned, WorkItemReassigned)
    assert reassigned.assignee == "frank"
    assert reassigned.reason == "coverage (erin is out of office)"


def test_a_non_admin_cannot_reassign() -> None:
    item = given(request("user", "ann"))

    rejection = rejected(item, Reassign("ann", "user", "bob"))

    assert (rejection.code, rejection.reason) == ("forbidden", "only an admin may reassign")


def test_reassigning_to_someone_unknown_is_invalid() -> None:
    item = given(request("user", "ann"))

    assert rejected(item, Reassign("dave", "user", "zed")).reason == "unknown user 'zed'"
    assert rejected(item, Reassign("dave", "user", "")).code == "invalid"


def test_a_finished_item_cannot_be_reassigned() -> None:
    item = given(request("user", "ann"), Complete("ann", {}))

    assert rejected(item, Reassign("dave", "user", "bob")).code == "conflict"


def test_after_an_escalation_a_reassignment_plans_no_second_escalation() -> None:
    req = request(
        "user", "ann", due_at=DUE, escalation=Escalation(after_due_seconds=3600, action="notify")
    )
    item = given(req)
    item = then(item, accepted(item, Escalate(1), now=DUE + timedelta(hours=1)))

    decision = accepted(item, Reassign("dave", "user", "bob"))

    assert [t.purpose for t in decision.timers] == []


def test_the_owner_delegates_and_keeps_sight() -> None:
    item = given(request("user", "ann"))

    decision = accepted(item, Delegate("ann", "gary"))

    delegated = decision.events[0]
    assert isinstance(delegated, WorkItemDelegated)
    assert (delegated.delegate, delegated.recipients) == ("gary", ["gary"])
    assert [c.user for c in delegated.contacts] == ["gary"]  # the delegate is told
    after = then(item, decision)
    assert (after.assignee, after.delegated_to) == ("ann", "gary")
    assert can_see(after, "ann", DIRECTORY) and can_see(after, "gary", DIRECTORY)


def test_the_claimer_of_a_group_item_delegates_it() -> None:
    item = given(request("group", "hr"), Claim("ann"))

    after = then(item, accepted(item, Delegate("ann", "gary")))

    assert (after.status, after.claimed_by, after.delegated_to) == (Status.CLAIMED, "ann", "gary")


def test_releasing_takes_the_delegation_back_with_the_item() -> None:
    item = given(request("group", "hr"), Claim("ann"), Delegate("ann", "gary"))

    after = then(item, accepted(item, Release("ann")))

    assert (after.claimed_by, after.delegated_to) == (None, None)


def test_an_unclaimed_group_item_is_claimed_before_it_is_delegated() -> None:
    item = given(request("group", "hr"))

    rejection = rejected(item, Delegate("ann", "gary"))

    assert (rejection.code, rejection.reason) == (
        "conflict",
        "claim the work item before delegating it",
    )


def test_only_the_owner_delegates() -> None:
    item = given(request("user", "ann"), Delegate("ann", "gary"))

    assert rejected(item, Delegate("gary", "bob")).code == "forbidden"
    assert rejected(item, Delegate("dave", "bob")).code == "forbidden"
    assert rejected(item, Delegate("bob", "gary")).code == "not_found"


def test_delegating_to_nobody_sensible_is_refused() -> None:
    item = given(request("user", "ann"), Delegate("ann", "gary"))

    assert rejected(item, Delegate("ann", "zed")).reason == "unknown user 'zed'"
    assert (
        rejected(item, Delegate("ann", "ann")).reason == "cannot delegate a work item to yourself"
    )
    assert (
        rejected(item, Delegate("ann", "gary")).reason
        == "the work item is already delegated to 'gary'"
    )


def test_anyone_who_sees_the_item_may_comment() -> None:
    item = given(request("group", "hr"))

    decision = accepted(item, Comment("bob", "I can take it tomorrow"))

    commented = decision.events[0]
    assert (
        isinstance(commented, WorkItemCommented) and commented.comment == "I can take it tomorrow"
    )
    entry = then(item, decision).history[-1]
    assert (entry.actor, entry.action, entry.field, entry.new) == (
        "bob",
        "comment",
        None,
        "I can take it tomorrow",
    )


def test_comments_are_not_empty_nor_endless_nor_from_strangers() -> None:
    item = given(request("user", "ann"))

    assert rejected(item, Comment("ann", "  ")).reason == "a comment cannot be empty"
    assert rejected(item, Comment("ann", "x" * 4001)).code == "invalid"
    assert rejected(item, Comment("gary", "hello")).code == "not_found"


def test_canceling_withdraws_the_item() -> None:
    item = given(request("group", "hr"), Claim("ann"))

    decision = accepted(item, Cancel("run canceled by an operator"))

    canceled = decision.events[0]
    assert isinstance(canceled, WorkItemCanceled)
    assert (canceled.reason, canceled.actor) == ("run canceled by an operator", "system")
    after = then(item, decision)
    assert (after.status, after.cancel_reason) == (Status.CANCELED, "run canceled by an operator")


def test_a_canceled_item_cannot_be_canceled_again_nor_touched() -> None:
    item = given(request("group", "hr"), Cancel("stage discontinued"))

    assert rejected(item, Cancel("again")).reason == "cannot cancel a canceled work item"
    assert rejected(item, Claim("ann")).reason == "the work item was canceled: stage discontinued"
    assert types_of(accepted(given(request("user", "ann")), Cancel("x"))) == ["WorkItemCanceled"]
