"""What the spine stores of a work item (services/assignment/store.py ``state_of``): the
item's fields read off the validated item are what pydantic's dump gives, value for value
and byte for byte once encoded, whatever commands moved the item."""

from __future__ import annotations

from datetime import timedelta

import bson
from assignment_builders import DIRECTORY, NOW, open_command
from hypothesis import given, settings
from hypothesis import strategies as st
from test_assignment_properties import commands, openings

from contracts.events.workitems import WorkItemRequested
from services.assignment.core import Command, Decision, WorkItem, apply, decide
from services.assignment.lookup import lookup_keys
from services.assignment.store import dumped, item_of, state_of


def as_pydantic_dumps(item: WorkItem, correlation_id: str) -> dict[str, object]:
    state = item.model_dump(mode="python", exclude={"id"})
    return {**state, "correlation_id": correlation_id, "lookup": lookup_keys(state)}


def same_state(item: WorkItem) -> None:
    ours, theirs = state_of(item, "corr-1"), as_pydantic_dumps(item, "corr-1")
    assert ours == theirs
    assert list(ours) == list(theirs)  # the document's field order too
    assert bson.encode(ours) == bson.encode(theirs)
    assert item_of({**ours, "_id": item.id}) == item  # read back, the same item


@settings(max_examples=200, deadline=None)
@given(openings, st.lists(commands, max_size=15))
def test_the_stored_state_is_pydantics_dump_after_any_commands(
    opening: WorkItemRequested, sequence: list[Command]
) -> None:
    now = NOW
    item = apply(None, decide(None, open_command(opening), now, DIRECTORY), now)  # type: ignore[arg-type]
    assert item is not None
    same_state(item)
    for command in sequence:
        now += timedelta(minutes=7)
        result = decide(item, command, now, DIRECTORY)
        if isinstance(result, Decision):
            moved = apply(item, result, now)
            assert moved is not None
            item = moved
            same_state(item)


def test_the_items_dicts_are_in_the_state_unchanged_and_its_models_are_dicts() -> None:
    item = apply(None, decide(None, open_command(), NOW, DIRECTORY), NOW)  # type: ignore[arg-type]
    assert item is not None
    state = dumped(item)
    assert "id" not in state
    assert state["requested_assignee"] == {"kind": "user", "value": "ann"}
    assert all(type(entry) is dict for entry in state["history"])
    assert state["record"] == item.record
