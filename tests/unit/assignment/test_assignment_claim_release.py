"""Claiming and releasing pooled work items."""

from __future__ import annotations

from assignment_builders import accepted, given, rejected, request, then, types_of

from contracts.events.workitems import WorkItemClaimed, WorkItemReleased
from services.assignment.core import Claim, Release, Status


def test_a_member_claims_a_group_item() -> None:
    item = given(request("group", "hr"))

    decision = accepted(item, Claim("ann"))

    assert types_of(decision) == ["WorkItemClaimed"]
    claimed = decision.events[0]
    assert isinstance(claimed, WorkItemClaimed) and claimed.actor == "ann"
    assert claimed.recipients == ["bob", "ann"]
    after = then(item, decision)
    assert (after.status, after.claimed_by) == (Status.CLAIMED, "ann")
    assert [(e.field, e.old, e.new) for e in after.history[-2:]] == [
        ("status", Status.OPEN, Status.CLAIMED),
        ("claimed_by", None, "ann"),
    ]


def test_a_member_claims_a_queue_item() -> None:
    item = given(request("queue", "it"))

    assert types_of(accepted(item, Claim("frank"))) == ["WorkItemClaimed"]


def test_a_claimed_item_cannot_be_claimed_again() -> None:
    item = given(request("group", "hr"), Claim("ann"))

    rejection = rejected(item, Claim("bob"))

    assert (rejection.code, rejection.reason) == ("conflict", "cannot claim a claimed work item")


def test_a_non_member_cannot_even_see_the_group_item() -> None:
    item = given(request("group", "hr"))

    assert rejected(item, Claim("gary")).code == "not_found"


def test_an_admin_who_is_not_a_member_cannot_claim() -> None:
    item = given(request("group", "hr"))

    rejection = rejected(item, Claim("dave"))

    assert (rejection.code, rejection.reason) == (
        "forbidden",
        "'dave' is not a member of group 'hr'",
    )


def test_a_user_item_is_not_claimed() -> None:
    item = given(request("user", "ann"))

    rejection = rejected(item, Claim("ann"))

    assert rejection.code == "conflict"
    assert "only group or queue work items are claimed" in rejection.reason


def test_the_claimer_releases_the_item_back_to_the_pool() -> None:
    item = given(request("group", "hr"), Claim("ann"))

    decision = accepted(item, Release("ann"))

    released = decision.events[0]
    assert isinstance(released, WorkItemReleased) and released.recipients == ["bob", "ann"]
    after = then(item, decision)
    assert (after.status, after.claimed_by) == (Status.OPEN, None)


def test_an_admin_may_release_someone_elses_claim() -> None:
    item = given(request("group", "hr"), Claim("ann"))

    assert types_of(accepted(item, Release("dave"))) == ["WorkItemReleased"]


def test_another_member_cannot_release_my_claim() -> None:
    item = given(request("group", "hr"), Claim("ann"))

    rejection = rejected(item, Release("bob"))

    assert (rejection.code, rejection.reason) == (
        "forbidden",
        "only the claimer (ann) or an admin may release it",
    )


def test_an_open_item_cannot_be_released() -> None:
    item = given(request("group", "hr"))

    assert rejected(item, Release("ann")).reason == "cannot release an open work item"
