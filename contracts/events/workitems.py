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
    VERSION = 2
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
    # Who started the run: told when the item is done (unless they did it themselves).
    started_by: str | None = Field(default=None, max_length=200)


class WorkItemCancelRequested(Payload):
    """The run was canceled or the stage discontinued: withdraw the step's open item."""

    TYPE = "WorkItemCancelRequested"
    TOPIC = WORKITEMS_DISPATCH

    step: str
    reason: str


class Contact(BaseModel):
    """How to reach a person, as the directory said when the event was made.

    ``channels`` is their preference, in order ("email", "chat").  Notification reaches
    people through what their work-item events carry, reading no directory of its own.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    user: str = Field(min_length=1, max_length=200)
    email: str | None = None
    chat_handle: str | None = None
    channels: list[str] = Field(default_factory=lambda: ["email"])


class WorkItemEvent(Payload):
    """Fields every work-item event carries (enough for notification without a lookup).

    ``contacts`` tells how to reach each of the ``recipients`` the directory knows.
    """

    TOPIC = WORKITEMS_EVENTS
    VERSION = 2

    work_item_id: str
    step: str
    title: str = ""
    orchestration: str = ""
    actor: str = "system"
    assignee_kind: str = ""
    assignee: str = ""
    recipients: list[str] = Field(default_factory=list)
    due_at: AwareDatetime | None = None
    contacts: list[Contact] = Field(default_factory=list)


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
    """The item is done, and with it its step: the coordinator applies it as the step's
    outcome (``attempt``, ``outputs``), so no StepCompleted follows (decision 17).

    ``attempt`` 0 marks a version 2 event, which a StepCompleted on steps.outcomes followed.
    """

    TYPE = "WorkItemCompleted"
    VERSION = 3

    decision: Literal["approved", "rejected"] | None = None
    comment: str = ""
    attempt: int = Field(default=0, ge=0)
    outputs: dict[str, Any] = Field(default_factory=dict)


class WorkItemCompletedV2(WorkItemEvent):
    """Before decision 17: the step's outcome went to steps.outcomes as a StepCompleted."""

    TYPE = "WorkItemCompleted"
    VERSION = 2

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


# The events that give an item to someone: who holds it after one of them takes part in the
# item's run (the coordinator records them, services/stage_coordinator/core/participants.py).
# A claim is not among them: the claimer is a member of the item's group or queue.
HOLDER_EVENTS: tuple[type[WorkItemEvent], ...] = (
    WorkItemAssigned, WorkItemReassigned, WorkItemDelegated, WorkItemEscalated,
)
HOLDER_POOLS = ("user", "group", "queue")
SYSTEM = "system"


def holder_keys(event: WorkItemEvent) -> list[str]:
    """Who holds the item after ``event``, as a run's participants read: its assignee
    (``user:<id>``, ``group:<id>``, ``queue:<id>``), and the delegate of a delegation.

    One function for the producer, which puts these in the ``holders`` header
    (:func:`contracts.registry.header_pairs`), and the coordinator, which records them.
    """
    keys: list[str] = []
    if event.assignee_kind in HOLDER_POOLS and event.assignee:
        keys.append(f"{event.assignee_kind}:{event.assignee}")
    if isinstance(event, WorkItemDelegated) and event.delegate and event.delegate != SYSTEM:
        keys.append(f"user:{event.delegate}")
    return keys


# --- version 1: the same events without the recipients' contacts (upcast at the edge) ---


class WorkItemEventV1(Payload):
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


class WorkItemAssignedV1(WorkItemEventV1):
    TYPE = "WorkItemAssigned"


class WorkItemClaimedV1(WorkItemEventV1):
    TYPE = "WorkItemClaimed"


class WorkItemReleasedV1(WorkItemEventV1):
    TYPE = "WorkItemReleased"


class WorkItemReassignedV1(WorkItemEventV1):
    TYPE = "WorkItemReassigned"

    previous_assignee: str = ""
    reason: str = ""


class WorkItemDelegatedV1(WorkItemEventV1):
    TYPE = "WorkItemDelegated"

    delegate: str = ""


class WorkItemCompletedV1(WorkItemEventV1):
    TYPE = "WorkItemCompleted"

    decision: Literal["approved", "rejected"] | None = None
    comment: str = ""


class WorkItemCanceledV1(WorkItemEventV1):
    TYPE = "WorkItemCanceled"

    reason: str = ""


class WorkItemReminderDueV1(WorkItemEventV1):
    TYPE = "WorkItemReminderDue"

    overdue: bool = False


class WorkItemEscalatedV1(WorkItemEventV1):
    TYPE = "WorkItemEscalated"

    action: str = ""
    previous_assignee: str = ""


class WorkItemCommentedV1(WorkItemEventV1):
    TYPE = "WorkItemCommented"

    comment: str = ""


class WorkItemAssignmentFailedV1(WorkItemEventV1):
    TYPE = "WorkItemAssignmentFailed"

    error: str = ""


class WorkItemRequestedV1(Payload):
    """The first WorkItemRequested, without the run's starter.  Upcast to v2 at the edge."""

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
