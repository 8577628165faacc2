"""Moving a work item between people: reassign, delegate, and what its timers do."""

from __future__ import annotations

from datetime import datetime

from pydantic import ValidationError

from contracts.events.workitems import (
    AssigneeSpec,
    WorkItemDelegated,
    WorkItemEscalated,
    WorkItemReassigned,
    WorkItemReminderDue,
)
from services.assignment.core.commands import SYSTEM, Delegate, Escalate, FireReminder, Reassign
from services.assignment.core.decision import Decision, about, check, check_text
from services.assignment.core.directory import Directory, Resolution
from services.assignment.core.rejection import Rejection
from services.assignment.core.timers import Timer, plan_timers
from services.assignment.core.workitem import WorkItem


def reassign(
    item: WorkItem, command: Reassign, now: datetime, directory: Directory
) -> Decision | Rejection:
    rejected = check(item, command.actor, "reassign", "reassign", directory)
    rejected = rejected or check_text("reason", command.reason, required=False)
    if rejected:
        return rejected
    try:
        spec = AssigneeSpec(kind=command.to_kind, value=command.to)
    except ValidationError:
        return Rejection(f"cannot reassign to {command.to_kind} {command.to!r}", "invalid")
    resolution = directory.resolve(spec, item.record)
    if isinstance(resolution, Rejection):
        return resolution
    reason = command.reason
    if resolution.delegated_from:
        reason = f"{reason} ({resolution.delegated_from} is out of office)".strip()
    reassigned = WorkItemReassigned(
        **about(item, command.actor, **_assignee(resolution)),
        previous_assignee=item.assignee,
        reason=reason,
    )
    return Decision(events=(reassigned,), timers=_replan(item, now))


def delegate(item: WorkItem, command: Delegate, directory: Directory) -> Decision | Rejection:
    """The owner hands the work to someone and keeps sight of it (the assignee stays)."""
    rejected = check(item, command.actor, "delegate", "delegate", directory)
    if rejected:
        if item.is_pooled and item.claimed_by is None and rejected.code == "forbidden":
            return Rejection("claim the work item before delegating it", "conflict")
        return rejected
    if command.to not in directory.users:
        return Rejection(f"unknown user {command.to!r}", "invalid")
    if command.to == command.actor:
        return Rejection("cannot delegate a work item to yourself", "invalid")
    if command.to == item.delegated_to:
        return Rejection(f"the work item is already delegated to {command.to!r}", "conflict")
    delegated = WorkItemDelegated(
        **about(item, command.actor, recipients=[command.to]), delegate=command.to
    )
    return Decision(events=(delegated,))


def fire_reminder(item: WorkItem, command: FireReminder) -> Decision:
    if _stale(item, command.epoch):
        return Decision()
    return Decision(events=(WorkItemReminderDue(**about(item, SYSTEM), overdue=command.overdue),))


def escalate(
    item: WorkItem, command: Escalate, now: datetime, directory: Directory
) -> Decision | Rejection:
    """Escalate once per item: to the owner's manager, back to a group, or just notify."""
    escalation = item.escalation
    if _stale(item, command.epoch) or escalation is None or item.escalated:
        return Decision()
    previous = item.assignee
    if escalation.action == "notify":
        manager = directory.manager_of(item.owner) if item.owner else None
        heard = item.audience() + list(
            manager.recipients if isinstance(manager, Resolution) else ()
        )
        recipients = list(dict.fromkeys(heard))
        event = WorkItemEscalated(
            **about(item, SYSTEM, recipients=recipients),
            action="notify",
            previous_assignee=previous,
        )
        return Decision(events=(event,))
    resolution = _escalation_target(item, escalation.action, escalation.group, directory)
    if isinstance(resolution, Rejection):
        return resolution
    event = WorkItemEscalated(
        **about(item, SYSTEM, **_assignee(resolution)),
        action=escalation.action,
        previous_assignee=previous,
    )
    return Decision(events=(event,), timers=_replan(item, now, escalated=True))


def _escalation_target(
    item: WorkItem, action: str, group: str | None, directory: Directory
) -> Resolution | Rejection:
    if action == "reassign_to_manager":
        if item.owner is None:
            reason = (
                f"{item.assignee_kind} {item.assignee!r} is unclaimed: no manager to escalate to"
            )
            return Rejection(reason, "conflict")
        return directory.manager_of(item.owner)
    if not group:
        return Rejection("the escalation releases to a group but names none", "invalid")
    return directory.resolve_pool("group", group)


def _stale(item: WorkItem, epoch: int) -> bool:
    """A timer for an earlier assignment, or for an item that is done: it does nothing."""
    return item.is_finished or epoch != item.epoch


def _assignee(resolution: Resolution) -> dict[str, object]:
    return {
        "assignee_kind": resolution.assignee_kind,
        "assignee": resolution.assignee,
        "recipients": list(resolution.recipients),
    }


def _replan(item: WorkItem, now: datetime, *, escalated: bool = False) -> tuple[Timer, ...]:
    """Timers for the next assignment (the epoch it moves to); an escalation happens once."""
    return plan_timers(
        item.id,
        due_at=item.due_at,
        before_due_seconds=item.reminders_before_due_seconds,
        after_due_seconds=item.reminders_after_due_seconds,
        escalation=None if escalated or item.escalated else item.escalation,
        epoch=item.epoch + 1,
        now=now,
    )
