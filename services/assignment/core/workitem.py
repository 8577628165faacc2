"""The work item: its state, its audit history and the one table of status transitions."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.events.workitems import AssigneeSpec, Escalation
from services.assignment.core.rejection import Rejection


class Status(StrEnum):
    WAITING = "waiting"  # for the directory: nobody it names can take the item yet
    OPEN = "open"
    CLAIMED = "claimed"
    COMPLETED = "completed"
    CANCELED = "canceled"


Action = Literal[
    "assign",
    "claim",
    "release",
    "complete",
    "approve",
    "reject",
    "cancel",
    "reassign",
    "escalate",
    "notify",
    "delegate",
    "comment",
    "remind",
]

# Every status change of a work item, and nothing else.  An item whose assignee the
# directory cannot resolve waits until a directory change (or an admin's reassign) gives
# it someone; nobody can claim or complete it meanwhile.  Reassigning or escalating to
# someone new reopens the item (the new assignee has not claimed it); delegating,
# commenting, reminding and a notify-only escalation leave the status as it is.
TRANSITIONS: Mapping[Status, Mapping[Action, Status]] = {
    Status.WAITING: {
        "assign": Status.OPEN,
        "reassign": Status.OPEN,
        "comment": Status.WAITING,
        "cancel": Status.CANCELED,
    },
    Status.OPEN: {
        "assign": Status.OPEN,
        "claim": Status.CLAIMED,
        "reassign": Status.OPEN,
        "escalate": Status.OPEN,
        "notify": Status.OPEN,
        "delegate": Status.OPEN,
        "comment": Status.OPEN,
        "remind": Status.OPEN,
        "complete": Status.COMPLETED,
        "approve": Status.COMPLETED,
        "reject": Status.COMPLETED,
        "cancel": Status.CANCELED,
    },
    Status.CLAIMED: {
        "release": Status.OPEN,
        "reassign": Status.OPEN,
        "escalate": Status.OPEN,
        "notify": Status.CLAIMED,
        "delegate": Status.CLAIMED,
        "comment": Status.CLAIMED,
        "remind": Status.CLAIMED,
        "complete": Status.COMPLETED,
        "approve": Status.COMPLETED,
        "reject": Status.COMPLETED,
        "cancel": Status.CANCELED,
    },
    # A completion the run never applied (it was canceled, or the stage moved on, before
    # the answer reached it) is withdrawn: the item must not say the answer was used.
    Status.COMPLETED: {"cancel": Status.CANCELED},
    Status.CANCELED: {},
}
TERMINAL = frozenset({Status.COMPLETED, Status.CANCELED})  # nobody acts on it any more


def next_status(status: Status, action: Action) -> Status | Rejection:
    target = TRANSITIONS[status].get(action)
    if target is None:
        article = "an" if status[0] in "aeiou" else "a"
        return Rejection(f"cannot {action} {article} {status} work item", "conflict")
    return target


class AuditEntry(BaseModel):
    """One line of the append-only history: who changed what, when, from what to what."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: datetime
    actor: str
    action: str
    field: str | None = None
    old: Any = None
    new: Any = None


class WorkItem(BaseModel):
    """A person's task in the Work Guide.  Only :func:`evolve` makes a changed copy.

    ``epoch`` grows whenever the assignee or the due date changes; a timer planned
    under an older epoch finds the item moved on and does nothing.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    run_id: str
    orchestration: str
    version: int
    stage: str
    step: str
    attempt: int
    kind: Literal["interactive", "approval"]
    title: str
    status: Status = Status.OPEN
    assignee_kind: str = ""
    assignee: str = ""
    recipients: tuple[str, ...] = ()
    requested_assignee: AssigneeSpec | None = Field(default=None, description="as the step says")
    waiting_reason: str = ""
    claimed_by: str | None = None
    delegated_to: str | None = None
    delegated_from: str | None = Field(default=None, description="out-of-office original")
    started_by: str | None = Field(default=None, description="who started the run")
    form: dict[str, Any] | None = None
    record: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    due_at: datetime | None = None
    reminders_before_due_seconds: tuple[float, ...] = ()
    reminders_after_due_seconds: tuple[float, ...] = ()
    escalation: Escalation | None = None
    escalated: bool = False
    created_at: datetime
    updated_at: datetime
    completed_by: str | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)
    decision: Literal["approved", "rejected"] | None = None
    comment: str = ""
    cancel_reason: str = ""
    epoch: int = 0
    history: tuple[AuditEntry, ...] = ()

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL

    @property
    def is_pooled(self) -> bool:
        """Assigned to a group or queue: members claim it before one of them works on it."""
        return self.assignee_kind in ("group", "queue")

    @property
    def owner(self) -> str | None:
        """The one person the item is with: the claimer, or the user assignee."""
        if self.claimed_by:
            return self.claimed_by
        return self.assignee if self.assignee_kind == "user" else None

    def audience(self) -> list[str]:
        """Who hears about the item now: its owner (or the pool) and the delegate."""
        people = [self.owner] if self.owner else list(self.recipients)
        if self.delegated_to:
            people.append(self.delegated_to)
        return list(dict.fromkeys(p for p in people if p))


# Fields whose every change is written to the history with its old and new value.
AUDITED_FIELDS = (
    "status",
    "waiting_reason",
    "assignee_kind",
    "assignee",
    "recipients",
    "claimed_by",
    "delegated_to",
    "delegated_from",
    "due_at",
    "escalated",
    "completed_by",
    "outputs",
    "decision",
    "comment",
    "cancel_reason",
)
