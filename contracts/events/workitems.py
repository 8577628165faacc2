"""workitems.dispatch and workitems.events: interactive steps and what people do with them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.envelope import Payload
from contracts.topics import WORKITEMS_DISPATCH, WORKITEMS_EVENTS

AssigneeKind = Literal["user", "group", "queue", "record_field", "manager_of"]


class AssigneeSpec(BaseModel):
    """Who a work item is for, as the definition says it (resolved by assignment)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: AssigneeKind
    value: str = Field(min_length=1, max_length=200)


class Escalation(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    after_due_seconds: float = Field(default=0, ge=0)
    action: Literal["reassign_to_manager", "release_to_group", "notify"] = "reassign_to_manager"
    group: str | None = None


class WorkItemRequested(Payload):
    """Open a work item for an interactive or approval step."""

    TYPE = "WorkItemRequested"
    TOPIC = WORKITEMS_DISPATCH

    orchestration: str
    version: int
    stage: str
    step: str
    attempt: int = Field(ge=1)
    kind: Literal["interactive", "approval"]
    title: str
    assignee: AssigneeSpec
    form: dict[str, Any] | None = None
    record: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    due_at: AwareDatetime | None = None
    reminders_before_due_seconds: list[float] = Field(default_factory=list)
    reminders_after_due_seconds: list[float] = Field(default_factory=list)
    escalation: Escalation | None = None


class WorkItemCancelRequested(Payload):
    """The run was canceled or the stage discontinued: withdraw the step's open item."""

    TYPE = "WorkItemCancelRequested"
    TOPIC = WORKITEMS_DISPATCH

    step: str
    reason: str


class WorkItemEvent(Payload):
    """Fields every work-item event carries (enough for notification without a lookup)."""

    TOPIC = WORKITEMS_EVENTS

    work_item_id: str
    step: str
    title: str = ""
    orchestration: str = ""
    actor: str = "system"
    assignee_kind: str = ""
    assignee: str = ""
    recipients: list[str] = Field(default_factory=list)
    due_at: AwareDatetime | None = None


class WorkItemAssigned(WorkItemEvent):
    TYPE = "WorkItemAssigned"


class WorkItemClaimed(WorkItemEvent):
    TYPE = "WorkItemClaimed"


class WorkItemReleased(WorkItemEvent):
    TYPE = "WorkItemReleased"


class WorkItemReassigned(WorkItemEvent):
    TYPE = "WorkItemReassigned"

    previous_assignee: str = ""
    reason: str = ""


class WorkItemDelegated(WorkItemEvent):
    TYPE = "WorkItemDelegated"

    delegate: str = ""


class WorkItemCompleted(WorkItemEvent):
    TYPE = "WorkItemCompleted"

    decision: Literal["approved", "rejected"] | None = None
    comment: str = ""


class WorkItemCanceled(WorkItemEvent):
    TYPE = "WorkItemCanceled"

    reason: str = ""


class WorkItemReminderDue(WorkItemEvent):
    TYPE = "WorkItemReminderDue"

    overdue: bool = False


class WorkItemEscalated(WorkItemEvent):
    TYPE = "WorkItemEscalated"

    action: str = ""
    previous_assignee: str = ""


class WorkItemCommented(WorkItemEvent):
    TYPE = "WorkItemCommented"

    comment: str = ""


class WorkItemAssignmentFailed(WorkItemEvent):
    """The assignee could not be resolved: the step fails visibly, never hangs."""

    TYPE = "WorkItemAssignmentFailed"

    error: str = ""
