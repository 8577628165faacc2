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
    WorkItemRequested,
)
from services.assignment.core.commands import Cancel, Claim, Comment, OpenWorkItem, Release
from services.assignment.core.decision import Decision, about, check, check_text
from services.assignment.core.directory import Directory, Resolution, depends_on_directory
from services.assignment.core.events import WorkItemOpened
from services.assignment.core.rejection import Rejection
from services.assignment.core.timers import Timer, plan_timers
from services.assignment.core.workitem import Status, WorkItem, next_status


def open_work_item(
    item: WorkItem | None, command: OpenWorkItem, now: datetime, directory: Directory
) -> Decision:
    """Resolve the assignee and open the item.

    When the directory cannot resolve the assignee (an unknown user, an empty queue), the
    item is opened waiting: a directory change or an admin's reassign gives it someone,
    and the run waits meanwhile instead of failing for a directory being repaired.  When
    the run's record lacks the field naming the person, no directory change helps: the
    step fails visibly.  A request for an item that already exists (a redelivery) decides
    nothing.
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
        if depends_on_directory(request.assignee, request.record):
            waiting = WorkItemOpened(command.work_item_id, command.run_id, request,
                                     waiting_reason=resolution.reason)
            return Decision(events=(waiting, failed))
        error = f"cannot assign the work item: {resolution.reason}"
        step_failed = StepFailed(
            step=request.step, attempt=request.attempt, error=error, retryable=False
        )
        return Decision(events=(failed, step_failed))
    opened = WorkItemOpened(
        command.work_item_id, command.run_id, request, resolution.delegated_from
    )
    return Decision(events=(opened, _assigned(command.work_item_id, request, resolution)),
                    timers=_timers(command.work_item_id, request, epoch=1, now=now))


def assign_waiting(item: WorkItem, now: datetime, directory: Directory) -> Decision:
    """A waiting item's assignee, resolved on the directory as it is now (else it waits on)."""
    if item.status != Status.WAITING or item.requested_assignee is None:
        return Decision()
    resolution = directory.resolve(item.requested_assignee, item.record)
    if isinstance(resolution, Rejection):
        return Decision()
    assigned = _assigned(item.id, item, resolution)
    return Decision(events=(assigned,), timers=_timers(item.id, item, epoch=item.epoch + 1,
                                                       now=now))


def _assigned(item_id: str, about: WorkItemRequested | WorkItem,
              resolution: Resolution) -> WorkItemAssigned:
    return WorkItemAssigned(
        work_item_id=item_id,
        step=about.step,
        title=about.title,
        orchestration=about.orchestration,
        assignee_kind=resolution.assignee_kind,
        assignee=resolution.assignee,
        recipients=list(resolution.recipients),
        due_at=about.due_at,
    )


def _timers(item_id: str, about: WorkItemRequested | WorkItem, *, epoch: int,
            now: datetime) -> tuple[Timer, ...]:
    """Reminders and escalation of the assignment ``epoch`` (the one WorkItemAssigned opens)."""
    if isinstance(about, WorkItem):
        before, after = about.reminders_before_due_seconds, about.reminders_after_due_seconds
    else:
        before, after = tuple(about.reminders_before_due_seconds), tuple(
            about.reminders_after_due_seconds)
    return plan_timers(item_id, due_at=about.due_at, before_due_seconds=before,
                       after_due_seconds=after, escalation=about.escalation, epoch=epoch,
                       now=now)


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
    """The run withdrew the step (a system command: no person's permission applies).

    The run withdraws only a step it still waits for: an item already completed there
    was answered too late (its outcome crossed the cancel), so the person who answered
    hears that it was not used, and the item says so.
    """
    moved = next_status(item.status, "cancel")
    if isinstance(moved, Rejection):
        return moved
    if item.status == Status.COMPLETED:
        reason = f"your answer was not used: {command.reason}"
        heard = [item.completed_by] if item.completed_by else item.audience()
        canceled = WorkItemCanceled(**about(item, command.actor, recipients=heard),
                                    reason=reason)
        return Decision(events=(canceled,))
    return Decision(events=(WorkItemCanceled(**about(item, command.actor, reason=command.reason)),))
