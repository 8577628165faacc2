"""evolve(item, event, at) -> item: the only code that changes a work item.

Every event moves the status through :data:`TRANSITIONS` (or leaves it) and appends to
the history one entry per audited field it changed, with the old and the new value;
an event that changes none (a comment, a reminder) still leaves one entry.  ``at`` is
the event's time (the envelope's ``occurred_at``): the contract payloads carry none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

from contracts.events.steps import StepFailed
from contracts.events.workitems import (
    WorkItemAssigned,
    WorkItemAssignmentFailed,
    WorkItemCanceled,
    WorkItemClaimed,
    WorkItemCommented,
    WorkItemCompleted,
    WorkItemDelegated,
    WorkItemEscalated,
    WorkItemReassigned,
    WorkItemReleased,
    WorkItemReminderDue,
)
from services.assignment.core.events import Event, WorkItemOpened
from services.assignment.core.rejection import Rejection
from services.assignment.core.workitem import (
    AUDITED_FIELDS,
    Action,
    AuditEntry,
    Status,
    WorkItem,
    next_status,
)


class InvalidEvent(ValueError):
    """An event that cannot apply to the item: a bug or a corrupt history, never a user error."""


def evolve(item: WorkItem | None, event: Event, at: datetime) -> WorkItem | None:
    if isinstance(event, WorkItemOpened):
        if item is not None:
            raise InvalidEvent(f"work item {item.id!r} is already open")
        return _opened(event, at)
    if isinstance(event, WorkItemAssignmentFailed | StepFailed):
        return item  # nothing was created
    if item is None:
        raise InvalidEvent(f"{type(event).__name__} before the work item was opened")
    applier = _APPLIERS.get(type(event))
    if applier is None:
        raise InvalidEvent(f"no applier for {type(event).__name__}")
    action, changes = applier(item, event)
    status = item.status if action is None else _move(item, action)
    update = {**changes, "status": status, "updated_at": at}
    note = event.comment if isinstance(event, WorkItemCommented) else None
    entries = _audit(item, update, at, event.actor, action or "output", note)
    # One copy with its history: the audit reads the changes, not a changed copy.
    return item.model_copy(update={**update, "history": (*item.history, *entries)})


def replay(events: Iterable[tuple[Event, datetime]]) -> WorkItem | None:
    """The item as its history of events makes it (replay(history) == state)."""
    item: WorkItem | None = None
    for event, at in events:
        item = evolve(item, event, at)
    return item


def _opened(event: WorkItemOpened, at: datetime) -> WorkItem:
    request = event.request
    status = Status.WAITING if event.waiting_reason else Status.OPEN
    return WorkItem(
        id=event.work_item_id,
        run_id=event.run_id,
        orchestration=request.orchestration,
        version=request.version,
        stage=request.stage,
        step=request.step,
        attempt=request.attempt,
        kind=request.kind,
        title=request.title,
        delegated_from=event.delegated_from,
        started_by=request.started_by,
        requested_assignee=request.assignee,
        status=status,
        waiting_reason=event.waiting_reason,
        form=request.form,
        record=request.record,
        context=request.context,
        due_at=request.due_at,
        reminders_before_due_seconds=tuple(request.reminders_before_due_seconds),
        reminders_after_due_seconds=tuple(request.reminders_after_due_seconds),
        escalation=request.escalation,
        created_at=at,
        updated_at=at,
        history=(AuditEntry(at=at, actor=event.actor, action="open", field="status",
                            new=status),),
    )


def _move(item: WorkItem, action: Action) -> Status:
    target = next_status(item.status, action)
    if isinstance(target, Rejection):
        raise InvalidEvent(f"work item {item.id!r}: {target.reason}")
    return target


def _audit(
    old: WorkItem, update: dict[str, Any], at: datetime, actor: str, action: str,
    note: str | None
) -> list[AuditEntry]:
    """One entry per audited field ``update`` changes (in :data:`AUDITED_FIELDS` order)."""
    entries = [
        AuditEntry(at=at, actor=actor, action=action, field=name, old=previous, new=value)
        for name in AUDITED_FIELDS
        if name in update and (value := update[name]) != (previous := getattr(old, name))
    ]
    return entries or [AuditEntry(at=at, actor=actor, action=action, new=note)]


Changes = tuple[Action | None, dict[str, Any]]
E = TypeVar("E")
_APPLIERS: dict[type, Callable[[WorkItem, Any], Changes]] = {}


Applier = Callable[[WorkItem, E], Changes]


def _applies(event_type: type[E]) -> Callable[[Applier[E]], Applier[E]]:
    def register(applier: Applier[E]) -> Applier[E]:
        _APPLIERS[event_type] = applier
        return applier

    return register


def _assignment(event: WorkItemAssigned | WorkItemReassigned | WorkItemEscalated) -> dict[str, Any]:
    return {
        "assignee_kind": event.assignee_kind,
        "assignee": event.assignee,
        "recipients": tuple(event.recipients),
        "due_at": event.due_at,
    }


@_applies(WorkItemAssigned)
def _assigned(item: WorkItem, event: WorkItemAssigned) -> Changes:
    return "assign", {**_assignment(event), "epoch": item.epoch + 1, "waiting_reason": ""}


@_applies(WorkItemClaimed)
def _claimed(item: WorkItem, event: WorkItemClaimed) -> Changes:
    return "claim", {"claimed_by": event.actor}


@_applies(WorkItemReleased)
def _released(item: WorkItem, event: WorkItemReleased) -> Changes:
    # A claimer's delegate worked for the claimer; the delegation goes back with the item.
    return "release", {"claimed_by": None, "delegated_to": None}


_UNASSIGNED = {"claimed_by": None, "delegated_to": None, "delegated_from": None}


@_applies(WorkItemReassigned)
def _reassigned(item: WorkItem, event: WorkItemReassigned) -> Changes:
    changes = {**_assignment(event), **_UNASSIGNED, "epoch": item.epoch + 1}
    return "reassign", {**changes, "waiting_reason": ""}


@_applies(WorkItemEscalated)
def _escalated(item: WorkItem, event: WorkItemEscalated) -> Changes:
    if event.action == "notify":
        return "notify", {"escalated": True}
    changes = {**_assignment(event), **_UNASSIGNED, "epoch": item.epoch + 1}
    return "escalate", {**changes, "escalated": True}


@_applies(WorkItemDelegated)
def _delegated(item: WorkItem, event: WorkItemDelegated) -> Changes:
    return "delegate", {"delegated_to": event.delegate}


@_applies(WorkItemCommented)
def _commented(item: WorkItem, event: WorkItemCommented) -> Changes:
    return "comment", {}


@_applies(WorkItemReminderDue)
def _reminded(item: WorkItem, event: WorkItemReminderDue) -> Changes:
    return "remind", {}


@_applies(WorkItemCompleted)
def _completed(item: WorkItem, event: WorkItemCompleted) -> Changes:
    action: Action = "complete"
    if event.decision is not None:
        action = "approve" if event.decision == "approved" else "reject"
    changes = {"completed_by": event.actor, "decision": event.decision, "comment": event.comment,
               "outputs": dict(event.outputs)}
    return action, changes


@_applies(WorkItemCanceled)
def _canceled(item: WorkItem, event: WorkItemCanceled) -> Changes:
    return "cancel", {"cancel_reason": event.reason}
