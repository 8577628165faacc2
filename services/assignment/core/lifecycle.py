"""Opening a work item, claiming, releasing, commenting and canceling it."""

from __future__ import annotations

from datetime import datetime

from contracts.events.steps import StepFailed
from contracts.events.workitems import (
    WorkItemAssigned,
    WorkItemAssignmentFailed,
    WorkItemCanceled,
    WorkItemClaimed,
    WorkItemCommented,
    WorkItemReleased,
)
from services.assignment.core.commands import Cancel, Claim, Comment, OpenWorkItem, Release
from services.assignment.core.decision import Decision, about, check, check_text
from services.assignment.core.directory import Directory
from services.assignment.core.events import WorkItemOpened
from services.assignment.core.rejection import Rejection
from services.assignment.core.timers import plan_timers
from services.assignment.core.workitem import WorkItem, next_status


def open_work_item(
    item: WorkItem | None, command: OpenWorkItem, now: datetime, directory: Directory
) -> Decision:
    """Resolve the assignee and open the item; an unresolvable one fails the step visibly.

    A request for an item that already exists (a redelivery) decides nothing.
    """
    if item is not None:
        return Decision()
    request = command.request
    resolution = directory.resolve(request.assignee, request.record)
    if isinstance(resolution, Rejection):
        failed = WorkItemAssignmentFailed(
            work_item_id=command.work_item_id,
            step=request.step,
            title=request.title,
            orchestration=request.orchestration,
            error=resolution.reason,
        )
        error = f"cannot assign the work item: {resolution.reason}"
        step_failed = StepFailed(
            step=request.step, attempt=request.attempt, error=error, retryable=False
        )
        return Decision(events=(failed, step_failed))
    opened = WorkItemOpened(
        command.work_item_id, command.run_id, request, resolution.delegated_from
    )
    assigned = WorkItemAssigned(
        work_item_id=command.work_item_id,
        step=request.step,
        title=request.title,
        orchestration=request.orchestration,
        assignee_kind=resolution.assignee_kind,
        assignee=resolution.assignee,
        recipients=list(resolution.recipients),
        due_at=request.due_at,
    )
    timers = plan_timers(
        command.work_item_id,
        due_at=request.due_at,
        before_due_seconds=request.reminders_before_due_seconds,
        after_due_seconds=request.reminders_after_due_seconds,
        escalation=request.escalation,
        epoch=1,  # the epoch WorkItemAssigned moves the new item to
        now=now,
    )
    return Decision(events=(opened, assigned), timers=timers)


def claim(item: WorkItem, command: Claim, directory: Directory) -> Decision | Rejection:
    rejected = check(item, command.actor, "claim", "claim", directory)
    if rejected:
        return rejected
    return Decision(events=(WorkItemClaimed(**about(item, command.actor)),))


def release(item: WorkItem, command: Release, directory: Directory) -> Decision | Rejection:
    rejected = check(item, command.actor, "release", "release", directory)
    if rejected:
        return rejected
    # Back in the pool: the whole group or queue hears that it can be claimed again.
    released = WorkItemReleased(**about(item, command.actor, recipients=list(item.recipients)))
    return Decision(events=(released,))


def comment(item: WorkItem, command: Comment, directory: Directory) -> Decision | Rejection:
    rejected = check(item, command.actor, "comment", "comment", directory)
    rejected = rejected or check_text("comment", command.text, required=True)
    if rejected:
        return rejected
    return Decision(events=(WorkItemCommented(**about(item, command.actor, comment=command.text)),))


def cancel(item: WorkItem, command: Cancel) -> Decision | Rejection:
    """The run withdrew the step (a system command: no person's permission applies)."""
    moved = next_status(item.status, "cancel")
    if isinstance(moved, Rejection):
        return moved
    return Decision(events=(WorkItemCanceled(**about(item, command.actor, reason=command.reason)),))
