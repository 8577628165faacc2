"""What decide returns, and the checks every person's command goes through first."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from contracts.envelope import Payload
from contracts.events.workitems import Contact, WorkItemEvent
from services.assignment.core.access import Verb, can_act, can_see
from services.assignment.core.directory import Directory
from services.assignment.core.events import Event
from services.assignment.core.rejection import Rejection
from services.assignment.core.timers import Timer
from services.assignment.core.workitem import Action, Status, WorkItem, next_status

MAX_TEXT = 4000


@dataclass(frozen=True)
class Decision:
    """Events to apply (in order) and publish, and timers to plan.  Empty: nothing to do."""

    events: tuple[Event, ...] = ()
    timers: tuple[Timer, ...] = ()

    @property
    def published(self) -> tuple[Payload, ...]:
        """The events that leave through the outbox (contract payloads only)."""
        return tuple(event for event in self.events if isinstance(event, Payload))


def check(
    item: WorkItem, actor: str, verb: Verb, action: Action, directory: Directory
) -> Rejection | None:
    """Visibility first (a stranger learns nothing), then the status, then the permission."""
    if not can_see(item, actor, directory):
        return Rejection(f"work item {item.id!r} not found", "not_found")
    if item.status == Status.CANCELED and action != "comment":
        return Rejection(f"the work item was canceled: {item.cancel_reason}".rstrip(": "),
                         "conflict")
    moved = next_status(item.status, action)
    if isinstance(moved, Rejection):
        return moved
    return can_act(item, actor, verb, directory)


def check_text(label: str, text: str, *, required: bool) -> Rejection | None:
    if required and not text.strip():
        return Rejection(f"a {label} cannot be empty", "invalid")
    if len(text) > MAX_TEXT:
        return Rejection(f"a {label} is at most {MAX_TEXT} characters", "invalid")
    return None


def about(item: WorkItem, actor: str, **overrides: Any) -> dict[str, Any]:
    """The fields every work-item event carries, so notification needs no lookup."""
    fields: dict[str, Any] = {
        "work_item_id": item.id,
        "step": item.step,
        "title": item.title,
        "orchestration": item.orchestration,
        "actor": actor,
        "assignee_kind": item.assignee_kind,
        "assignee": item.assignee,
        "recipients": item.audience(),
        "due_at": item.due_at,
    }
    return {**fields, **overrides}


def with_contacts(decision: Decision, directory: Directory) -> Decision:
    """Each work-item event carrying how to reach its recipients, from the directory now.

    Notification reads no directory: what it needs to tell people travels with the event.
    """
    if not any(isinstance(event, WorkItemEvent) for event in decision.events):
        return decision
    events = tuple(
        event.model_copy(update={"contacts": contacts(event.recipients, directory)})
        if isinstance(event, WorkItemEvent) else event
        for event in decision.events
    )
    return Decision(events, decision.timers)  # (dataclasses.replace costs four times this)


def contacts(user_ids: Iterable[str], directory: Directory) -> list[Contact]:
    """The contacts of the users the directory knows (its entries are validated already)."""
    return [
        Contact.model_construct(user=user.id, email=user.email, chat_handle=user.chat_handle,
                                channels=list(user.channels))
        for user_id in dict.fromkeys(user_ids)
        if (user := directory.users.get(user_id)) is not None
    ]
