"""The keys a work item is found by (decision 19): who finds it with one lookup is who may
see it, and the keys follow the item's status."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from assignment_builders import DIRECTORY, NOW

from services.assignment import lookup
from services.assignment.core.access import can_see
from services.assignment.core.workitem import Status, WorkItem
from services.assignment.store import ACTIVE, failed_state, state_of


def item(**fields: Any) -> WorkItem:
    return WorkItem(id="r1:collect:1", run_id="r1", orchestration="o", version=1, stage="s",
                    step="collect", attempt=1, kind="interactive", title="t", created_at=NOW,
                    updated_at=NOW, **fields)


def found_by(person: str, stored: WorkItem, statuses: tuple[str, ...] = ACTIVE) -> bool:
    """Whether ``person``'s "my work" lookup matches the keys stored with ``stored``."""
    wanted = set(lookup.held_by(lookup.callers_holders(person, DIRECTORY), statuses)["lookup"]
                 ["$in"])
    return bool(wanted & set(state_of(stored, None)["lookup"]))


def test_an_items_keys_name_its_run_its_status_and_whose_it_is() -> None:
    pooled = item(status=Status.CLAIMED, assignee_kind="group", assignee="hr",
                  claimed_by="bob", delegated_to="gary", delegated_from="erin")
    assert state_of(pooled, "c")["lookup"] == [
        "run:r1", "claimed:*", "claimed:group:hr", "claimed:user:bob", "claimed:user:gary",
        "claimed:user:erin"]
    mine = item(status=Status.COMPLETED, assignee_kind="user", assignee="ann",
                claimed_by="ann")
    assert state_of(mine, None)["lookup"] == ["run:r1", "completed:*", "completed:user:ann"]


def test_an_item_waiting_for_an_assignee_is_nobodys_yet() -> None:
    waiting = item(status=Status.WAITING, waiting_reason="no such user")
    assert state_of(waiting, None)["lookup"] == ["run:r1", "waiting:*"]
    assert lookup.with_status(["waiting"]) == {"lookup": {"$in": ["waiting:*"]}}


def test_a_failed_assignment_trace_is_found_only_with_its_run() -> None:
    trace = failed_state(run_id="r1", step="collect", attempt=1, error="no one", now=NOW)
    assert trace["lookup"] == ["run:r1"]
    assert lookup.of_runs(["r1", "r2", "r1"]) == {"lookup": {"$in": ["run:r1", "run:r2"]}}


PEOPLE = ["ann", "bob", "erin", "frank", "gary"]  # nobody here is an admin
HOLDS = [("user", "ann"), ("user", "bob"), ("group", "hr"), ("group", "ghosts"),
         ("queue", "it")]


@pytest.mark.parametrize(("kind", "assignee"), HOLDS)
def test_my_work_finds_exactly_the_active_items_a_person_may_see(kind: str, assignee: str) -> None:
    """The lookup keys stand for the access rule (can_see), admins aside: an item one
    may see is in one's list, and no other is."""
    pooled = kind in ("group", "queue")
    for claimed, to, by in itertools.product([None, *PEOPLE[:2]], [None, "gary"],
                                             [None, "erin"]):
        stored = item(status=Status.CLAIMED if claimed and pooled else Status.OPEN,
                      assignee_kind=kind, assignee=assignee,
                      claimed_by=claimed if pooled else None, delegated_to=to,
                      delegated_from=by)
        for person in PEOPLE:
            assert found_by(person, stored) == can_see(stored, person, DIRECTORY), (
                person, stored.assignee_kind, stored.assignee, claimed, to, by)
            assert not found_by(person, stored, ("completed", "canceled"))
