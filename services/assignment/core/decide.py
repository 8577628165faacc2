"""decide(item, command, now, directory) -> Decision | Rejection: read-only, deterministic.

Apply a Decision's events with :func:`~services.assignment.core.evolve.evolve` (in order,
at ``now``), store the item, its outbox (``Decision.published``) and the timers, and
only then publish.
"""

from __future__ import annotations

from datetime import datetime

from services.assignment.core.access import can_see
from services.assignment.core.commands import (
    Approve,
    AssignWaiting,
    Cancel,
    Claim,
    Command,
    Comment,
    Complete,
    Delegate,
    Escalate,
    FireReminder,
    OpenWorkItem,
    Reassign,
    Reject,
    Release,
)
from services.assignment.core.completion import approve, complete, reject
from services.assignment.core.decision import Decision, with_contacts
from services.assignment.core.directory import Directory
from services.assignment.core.evolve import evolve
from services.assignment.core.lifecycle import (
    assign_waiting,
    cancel,
    claim,
    comment,
    open_work_item,
    release,
)
from services.assignment.core.rejection import Rejection
from services.assignment.core.routing import delegate, escalate, fire_reminder, reassign
from services.assignment.core.workitem import WorkItem

# What people do through the Work Guide (the rest are the run's and the timers' commands).
PERSON_COMMANDS = (Claim, Release, Comment, Complete, Approve, Reject, Reassign, Delegate)


def decide(
    item: WorkItem | None, command: Command, now: datetime, directory: Directory
) -> Decision | Rejection:
    """What the command decides; its work-item events carry their recipients' contacts."""
    decided = _decide(item, command, now, directory)
    return decided if isinstance(decided, Rejection) else with_contacts(decided, directory)


def _decide(
    item: WorkItem | None, command: Command, now: datetime, directory: Directory
) -> Decision | Rejection:
    if isinstance(command, OpenWorkItem):
        return open_work_item(item, command, now, directory)
    if item is None:
        if isinstance(command, FireReminder | Escalate | AssignWaiting):
            return Decision()  # a timer outliving its item does nothing, like a stale one
        return Rejection("work item not found", "not_found")
    if isinstance(command, PERSON_COMMANDS) and not can_see(item, command.actor, directory):
        # Before anything about the item (its kind, its status): a stranger learns nothing.
        return Rejection(f"work item {item.id!r} not found", "not_found")
    match command:
        case Claim():
            return claim(item, command, directory)
        case Release():
            return release(item, command, directory)
        case Comment():
            return comment(item, command, directory)
        case Cancel():
            return cancel(item, command)
        case AssignWaiting():
            return assign_waiting(item, now, directory)
        case Complete():
            return complete(item, command, directory)
        case Approve():
            return approve(item, command, directory)
        case Reject():
            return reject(item, command, directory)
        case Reassign():
            return reassign(item, command, now, directory)
        case Delegate():
            return delegate(item, command, directory)
        case FireReminder():
            return fire_reminder(item, command)
        case Escalate():
            return escalate(item, command, now, directory)
    return Rejection(f"unknown command {type(command).__name__}", "invalid")  # pragma: no cover


def apply(item: WorkItem | None, decision: Decision, at: datetime) -> WorkItem | None:
    """The item after the decision's events."""
    for event in decision.events:
        item = evolve(item, event, at)
    return item


def handle(
    item: WorkItem | None, command: Command, now: datetime, directory: Directory
) -> tuple[WorkItem | None, Decision | Rejection]:
    """decide, then apply: the item to store and what was decided (a rejection changes nothing)."""
    result = decide(item, command, now, directory)
    if isinstance(result, Rejection):
        return item, result
    return apply(item, result, now), result
