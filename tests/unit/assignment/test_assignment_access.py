"""Who may see a work item and who may act on it."""

from __future__ import annotations

import pytest
from assignment_builders import DIRECTORY, given, rejected, request

from services.assignment.core import (
    Approve,
    Claim,
    Command,
    Comment,
    Complete,
    Delegate,
    Reassign,
    Reject,
    Rejection,
    Release,
    can_act,
    can_see,
)
from services.assignment.core.access import Verb


@pytest.mark.parametrize(
    ("kind", "value", "viewers", "strangers"),
    [
        ("user", "ann", {"ann", "dave"}, {"bob", "carol", "gary", "nobody"}),
        ("group", "hr", {"ann", "bob", "dave"}, {"carol", "gary", "frank"}),
        ("queue", "it", {"gary", "frank", "dave"}, {"ann", "bob"}),
        ("user", "erin", {"frank", "erin", "dave"}, {"ann"}),  # out of office: delegate + original
    ],
)
def test_who_sees_an_item(kind: str, value: str, viewers: set[str], strangers: set[str]) -> None:
    item = given(request(kind, value))

    assert {u for u in viewers if can_see(item, u, DIRECTORY)} == viewers
    assert not {u for u in strangers if can_see(item, u, DIRECTORY)}


def test_the_claimer_and_the_delegate_see_the_item() -> None:
    item = given(request("group", "hr"), Claim("ann"), Delegate("ann", "gary"))

    assert can_see(item, "ann", DIRECTORY) and can_see(item, "gary", DIRECTORY)


def test_another_user_can_neither_see_nor_complete_my_item() -> None:
    item = given(request("user", "ann"))

    assert not can_see(item, "bob", DIRECTORY)
    for verb in ("view", "complete", "comment", "delegate"):
        rejection = can_act(item, "bob", verb, DIRECTORY)
        assert rejection == Rejection("work item 'wi-1' not found", "not_found")


def test_a_non_admin_cannot_reassign_and_an_admin_can() -> None:
    item = given(request("group", "hr"))

    assert can_act(item, "ann", "reassign", DIRECTORY) == Rejection(
        "only an admin may reassign", "forbidden"
    )
    assert can_act(item, "dave", "reassign", DIRECTORY) is None


ALL_VERBS: tuple[Verb, ...] = (
    "view",
    "comment",
    "claim",
    "release",
    "complete",
    "approve",
    "reject",
    "delegate",
    "reassign",
)


def allowed(kind: str, value: str, actor: str, *commands: Claim | Delegate) -> set[str]:
    item = given(request(kind, value), *commands)
    return {verb for verb in ALL_VERBS if can_act(item, actor, verb, DIRECTORY) is None}


def test_what_each_person_may_do() -> None:
    finishing = {"complete", "approve", "reject"}
    assert allowed("user", "ann", "ann") == {"view", "comment", "delegate", *finishing}
    assert allowed("user", "ann", "dave") == {"view", "comment", "reassign"}
    # an unclaimed pooled item: members claim it, or complete it and so claim it implicitly
    assert allowed("group", "hr", "bob") == {"view", "comment", "claim", *finishing}
    # claimed by ann: bob only watches
    assert allowed("group", "hr", "bob", Claim("ann")) == {"view", "comment", "claim"}
    assert allowed("group", "hr", "ann", Claim("ann")) == {
        "view",
        "comment",
        "claim",
        "release",
        "delegate",
        *finishing,
    }
    assert allowed("group", "hr", "dave", Claim("ann")) == {
        "view",
        "comment",
        "release",
        "reassign",
    }
    assert allowed("user", "ann", "gary", Delegate("ann", "gary")) == {
        "view",
        "comment",
        *finishing,
    }


def test_unknown_users_see_nothing() -> None:
    item = given(request("group", "hr"))

    assert not can_see(item, "mallory", DIRECTORY)
    assert isinstance(can_act(item, "mallory", "claim", DIRECTORY), Rejection)


@pytest.mark.parametrize("step_kind", ["interactive", "approval"])
def test_a_stranger_gets_not_found_for_every_action_whatever_the_item_is(step_kind: str) -> None:
    """Not "only an approval item can be approved" (422): that tells the item exists and
    what kind it is.  Visibility is checked before the kind, the status or the text."""
    item = given(request("user", "ann", step_kind=step_kind))
    expected = Rejection("work item 'wi-1' not found", "not_found")
    commands: list[Command] = [
        Claim("bob"), Release("bob"), Comment("bob", ""), Complete("bob", {}),
        Approve("bob", "x" * 5000), Reject("bob"), Delegate("bob", "nobody"),
        Reassign("bob", "user", "bob"),
    ]
    for command in commands:
        assert rejected(item, command) == expected, command
    finished = given(request("user", "ann", step_kind=step_kind),
                     Approve("ann") if step_kind == "approval" else Complete("ann", {}))
    assert rejected(finished, Claim("bob")) == expected  # not "it is completed" either
