"""Properties of the work-item state machine under any sequence of commands."""

from __future__ import annotations

from datetime import datetime, timedelta

from assignment_builders import DIRECTORY, NOW, open_command, request
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.events.workitems import Escalation, WorkItemRequested
from services.assignment.core import (
    TRANSITIONS,
    Approve,
    Cancel,
    Claim,
    Command,
    Comment,
    Complete,
    Decision,
    Delegate,
    Escalate,
    Event,
    FireReminder,
    Reassign,
    Reject,
    Release,
    Status,
    WorkItem,
    decide,
    evolve,
    replay,
)


def reachable() -> set[Status]:
    seen, frontier = {Status.OPEN}, [Status.OPEN]
    while frontier:
        for target in TRANSITIONS[frontier.pop()].values():
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    return seen


REACHABLE = reachable()
people = st.sampled_from([*sorted(DIRECTORY.users), "mallory"])
epochs = st.integers(min_value=0, max_value=4)
values = st.sampled_from([{}, {"start_date": "2025-04-01", "laptop": {"model": "mac"}}, {"x": 1}])
targets = st.sampled_from([("user", "bob"), ("user", "erin"), ("group", "hr"), ("queue", "it")])

pool_members = st.sampled_from(["ann", "bob", "gary", "frank", "dave"])


def weighted(*choices: tuple[int, st.SearchStrategy[Command]]) -> st.SearchStrategy[Command]:
    weighted_list = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(weighted_list).flatmap(lambda strategy: strategy)


# Claims and releases come often and cancellation rarely, so that sequences get somewhere.
commands = weighted(
    (4, st.builds(Claim, pool_members)),
    (4, st.builds(Release, pool_members)),
    (2, st.builds(Complete, people, values)),
    (1, st.builds(Approve, people, st.sampled_from(["", "ok"]))),
    (1, st.builds(Reject, people, st.sampled_from(["", "no"]))),
    (2, targets.flatmap(lambda t: st.builds(Reassign, people, st.just(t[0]), st.just(t[1])))),
    (2, st.builds(Delegate, people, people)),
    (1, st.builds(Comment, people, st.sampled_from(["", "hello"]))),
    (1, st.builds(Cancel, st.just("withdrawn"))),
    (1, st.builds(FireReminder, epochs, st.booleans())),
    (1, st.builds(Escalate, epochs)),
)
openings = st.builds(
    lambda target, step_kind, action, form: request(
        target[0],
        target[1],
        step_kind=step_kind,
        form=form,
        after=[60],
        escalation=Escalation(after_due_seconds=0, action=action, group="hr"),
    ),
    st.sampled_from([("user", "ann"), ("user", "erin"), ("group", "hr"), ("queue", "it")]),
    st.sampled_from(["interactive", "approval"]),
    st.sampled_from(["reassign_to_manager", "release_to_group", "notify"]),
    st.sampled_from([None, {"type": "object", "required": ["start_date"]}]),
)


@settings(max_examples=300, deadline=None)
@given(openings, st.lists(commands, max_size=25))
def test_any_sequence_of_commands_keeps_the_item_consistent(
    opening: WorkItemRequested, sequence: list[Command]
) -> None:
    applied: list[tuple[Event, datetime]] = []
    now = NOW
    item = _apply(None, decide(None, open_command(opening), now, DIRECTORY), now, applied)
    assert item is not None

    for command in sequence:
        now += timedelta(minutes=7)
        result = decide(item, command, now, DIRECTORY)
        before = item
        after = _apply(item, result, now, applied)
        assert after is not None
        item = after

        assert item.status in REACHABLE
        if before.status == Status.COMPLETED and isinstance(command, Cancel):
            assert item.status == Status.CANCELED, "an answer the run did not use is withdrawn"
        elif before.is_finished:
            assert item.status == before.status, "a finished item never changes status"
            assert not isinstance(result, Decision) or not result.events
        assert item.history[: len(before.history)] == before.history, "history is append-only"
        assert len(item.history) >= len(before.history)
        if isinstance(result, Decision) and result.events:
            assert len(item.history) > len(before.history), "every event leaves a trace"
        assert item.epoch >= before.epoch

    assert replay(applied) == item, "replaying the events rebuilds the item"


def _apply(
    item: WorkItem | None,
    result: object,
    at: datetime,
    applied: list[tuple[Event, datetime]],
) -> WorkItem | None:
    if not isinstance(result, Decision):
        return item
    for event in result.events:
        item = evolve(item, event, at)
        applied.append((event, at))
    return item
