"""The directory: reading the document, and resolving every assignee kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from assignment_builders import DIRECTORY, DIRECTORY_DOCUMENT

from contracts.events.workitems import AssigneeSpec
from services.assignment.core import Directory, Rejection, Resolution
from services.assignment.core.directory import DirectoryError


def resolve(kind: str, value: str, record: dict[str, Any] | None = None) -> Resolution | Rejection:
    spec = AssigneeSpec(kind=kind, value=value)
    return DIRECTORY.resolve(spec, record or {})


def reason_of(result: Resolution | Rejection) -> str:
    assert isinstance(result, Rejection), result
    assert result.code == "invalid"
    return result.reason


def test_membership_is_the_union_of_member_lists_and_users_groups() -> None:
    assert DIRECTORY.groups["hr"].members == ("bob", "ann")
    assert DIRECTORY.users["ann"].groups == ("hr",)
    assert DIRECTORY.users["bob"].groups == ("hr",)
    assert DIRECTORY.queues["it"].members == ("gary", "frank")
    assert DIRECTORY.users["gary"].queues == ("it",)


def test_defaults_fill_what_a_document_leaves_out() -> None:
    directory = Directory.from_document({"users": [{"id": "zoe"}]})
    zoe = directory.users["zoe"]
    assert (zoe.name, zoe.channels, zoe.roles, zoe.out_of_office) == ("zoe", ("email",), (), False)
    assert directory.groups == {} and directory.queues == {}


def test_the_document_round_trips() -> None:
    assert Directory.from_document(DIRECTORY.to_document()) == DIRECTORY


def test_admins_are_users_with_the_admin_role() -> None:
    assert DIRECTORY.is_admin("dave")
    assert not DIRECTORY.is_admin("ann")
    assert not DIRECTORY.is_admin("nobody")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"users": [{"id": "a", "manager": "zed"}]}, "user 'a' names unknown manager 'zed'"),
        ({"users": [{"id": "a", "delegate": "zed"}]}, "user 'a' names unknown delegate 'zed'"),
        ({"users": [{"id": "a", "groups": ["x"]}]}, "user 'a' names unknown group 'x'"),
        ({"users": [{"id": "a", "queues": ["x"]}]}, "user 'a' names unknown queue 'x'"),
        ({"groups": [{"id": "g", "members": ["zed"]}]}, "group 'g' names unknown member 'zed'"),
        ({"queues": [{"id": "q", "members": ["zed"]}]}, "queue 'q' names unknown member 'zed'"),
        ({"users": [{"id": "a"}, {"id": "a"}]}, "user 'a' is declared twice"),
        ({"teams": []}, "unknown directory sections: teams"),
    ],
)
def test_a_directory_that_does_not_hold_together_is_refused(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(DirectoryError, match=message):
        Directory.from_document(change)


def test_a_misspelled_user_field_is_refused() -> None:
    with pytest.raises(ValueError, match="manger"):
        Directory.from_document({"users": [{"id": "a", "manger": "b"}]})


def test_a_user_resolves_to_that_user() -> None:
    assert resolve("user", "ann") == Resolution("user", "ann", ("ann",))


def test_an_out_of_office_user_resolves_to_their_delegate() -> None:
    assert resolve("user", "erin") == Resolution("user", "frank", ("frank",), "erin")


def test_a_chain_of_out_of_office_delegates_is_followed_and_a_cycle_stops() -> None:
    directory = Directory.from_document(
        {
            "users": [
                {"id": "a", "out_of_office": True, "delegate": "b"},
                {"id": "b", "out_of_office": True, "delegate": "c"},
                {"id": "c", "out_of_office": True, "delegate": "a"},
            ]
        }
    )
    assert directory.resolve_user("a") == Resolution("user", "c", ("c",), "a")


def test_out_of_office_without_a_delegate_keeps_the_user() -> None:
    directory = Directory.from_document({"users": [{"id": "a", "out_of_office": True}]})
    assert directory.resolve_user("a") == Resolution("user", "a", ("a",))


def test_a_group_resolves_to_all_its_members() -> None:
    assert resolve("group", "hr") == Resolution("group", "hr", ("bob", "ann"))


def test_a_queue_resolves_to_all_its_members() -> None:
    assert resolve("queue", "it") == Resolution("queue", "it", ("gary", "frank"))


def test_a_record_field_resolves_to_the_user_it_names() -> None:
    assert resolve("record_field", "owner", {"owner": "bob"}) == Resolution("user", "bob", ("bob",))
    prefixed = resolve("record_field", "record.owner", {"owner": "bob"})
    assert prefixed == Resolution("user", "bob", ("bob",))
    nested = resolve("record_field", "account.owner", {"account": {"owner": "gary"}})
    assert nested == Resolution("user", "gary", ("gary",))


def test_a_manager_of_a_user_resolves_to_the_manager() -> None:
    assert resolve("manager_of", "ann") == Resolution("user", "carol", ("carol",))


def test_a_manager_of_a_record_field_resolves_to_that_users_manager() -> None:
    assert resolve("manager_of", "record.owner", {"owner": "carol"}) == Resolution(
        "user", "dave", ("dave",)
    )


@pytest.mark.parametrize(
    ("kind", "value", "record", "reason"),
    [
        ("user", "zed", {}, "unknown user 'zed'"),
        ("group", "nope", {}, "unknown group 'nope'"),
        ("queue", "nope", {}, "unknown queue 'nope'"),
        ("group", "ghosts", {}, "group 'ghosts' has no members to work on it"),
        ("record_field", "owner", {}, "record field 'owner' is missing"),
        ("record_field", "owner", {"owner": "zed"}, "unknown user 'zed'"),
        ("record_field", "owner", {"owner": 7}, "record field 'owner' holds 7, not a user id"),
        ("record_field", "a.b", {"a": "flat"}, "record field 'a.b' is missing"),
        ("manager_of", "dave", {}, "user 'dave' has no manager"),
        ("manager_of", "zed", {}, "unknown user 'zed'"),
        ("manager_of", "record.owner", {}, "record field 'owner' is missing"),
        ("manager_of", "record.owner", {"owner": "zed"}, "unknown user 'zed'"),
    ],
)
def test_an_assignee_that_cannot_be_resolved_is_a_rejection_naming_it(
    kind: str, value: str, record: dict[str, Any], reason: str
) -> None:
    assert reason_of(resolve(kind, value, record)) == reason


def test_the_fixture_document_is_not_mutated() -> None:
    assert DIRECTORY_DOCUMENT["groups"][0]["members"] == ["bob"]


def test_the_example_directory_loads() -> None:
    path = Path(__file__).resolve().parents[3] / "examples" / "directory.yaml"
    assert path.exists(), "examples/directory.yaml ships with the project"

    directory = Directory.from_document(yaml.safe_load(path.read_text()))

    assert directory.users
    for group in directory.groups.values():
        assert all(member in directory.users for member in group.members)
