"""The run's domain events: what happened, in the past tense.

They are the run's history (stored with the run, append-only) and the only input of
``evolve``: replaying them from ``RunCreated`` rebuilds the stored state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from services.stage_coordinator.core.state import RunStatus, Timer


class RunEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    at: datetime
    actor: str = "system"


class RunCreated(RunEvent):
    kind: Literal["RunCreated"] = "RunCreated"
    run_id: str
    orchestration: str
    version: int
    inputs: dict[str, Any] = Field(default_factory=dict)
    record: dict[str, Any] = Field(default_factory=dict)
    record_key: str | None = None
    exclusive_per_record: bool = False
    stages: list[str]
    steps: list[tuple[str, str, str]]  # (stage, step, kind)


class StageEntered(RunEvent):
    kind: Literal["StageEntered"] = "StageEntered"
    stage: str


class StageSkipped(RunEvent):
    kind: Literal["StageSkipped"] = "StageSkipped"
    stage: str


class StageFinished(RunEvent):
    kind: Literal["StageFinished"] = "StageFinished"
    stage: str
    status: Literal["completed", "faulted", "discontinued"]


class StepStarted(RunEvent):
    kind: Literal["StepStarted"] = "StepStarted"
    step: str
    attempt: int
    participants: list[str] = Field(default_factory=list)  # whom its work item is for


class StepSucceeded(RunEvent):
    kind: Literal["StepSucceeded"] = "StepSucceeded"
    step: str
    outputs: dict[str, Any] = Field(default_factory=dict)
    decision: str | None = None
    comment: str | None = None
    merge_into_vars: bool = False


class StepRetryScheduled(RunEvent):
    kind: Literal["StepRetryScheduled"] = "StepRetryScheduled"
    step: str
    error: str
    timer: Timer


class StepFailed(RunEvent):
    kind: Literal["StepFailed"] = "StepFailed"
    step: str
    error: str


class StepSkipped(RunEvent):
    kind: Literal["StepSkipped"] = "StepSkipped"
    step: str
    reason: str
    outputs: dict[str, Any] = Field(default_factory=dict)


class StepCanceled(RunEvent):
    kind: Literal["StepCanceled"] = "StepCanceled"
    step: str
    reason: str


class StepReset(RunEvent):
    kind: Literal["StepReset"] = "StepReset"
    step: str


class TimerScheduled(RunEvent):
    kind: Literal["TimerScheduled"] = "TimerScheduled"
    timer: Timer


class TimerCleared(RunEvent):
    kind: Literal["TimerCleared"] = "TimerCleared"
    timer_id: str


class RunStatusChanged(RunEvent):
    kind: Literal["RunStatusChanged"] = "RunStatusChanged"
    status: RunStatus
    reason: str = ""


class RunMigrated(RunEvent):
    """The run now follows ``to_version``: its steps and stages are laid out as that version's.

    ``added_steps`` and ``moved_steps`` are ``(stage, step, kind)``: a moved step keeps its
    state but belongs to another stage or is of another kind from now on.
    """

    kind: Literal["RunMigrated"] = "RunMigrated"
    from_version: int
    to_version: int
    added_steps: list[tuple[str, str, str]] = Field(default_factory=list)
    removed_steps: list[str] = Field(default_factory=list)
    moved_steps: list[tuple[str, str, str]] = Field(default_factory=list)
    removed_stages: list[str] = Field(default_factory=list)


class ParticipantsJoined(RunEvent):
    """People or pools took a work item of the run (core/participants.py)."""

    kind: Literal["ParticipantsJoined"] = "ParticipantsJoined"
    participants: list[str]


def fields_of(event: RunEvent) -> dict[str, Any]:
    """``event.model_dump()``, at an eighth of its cost: the shell makes a history entry of
    every event it stores.

    The fields come in the same order.  A timer, the one model an event holds, is dumped;
    the other values are the event's own, not copies: events are frozen, and neither they
    nor the run change a JSON value in place (``Run.fork``).  The coordinator's invariant
    tests compare this with the dump of every event they see.
    """
    fields = dict(event.__dict__)
    timer = fields.get("timer")
    if timer is not None:
        fields["timer"] = timer.model_dump()
    return fields


AnyRunEvent = Annotated[
    RunCreated
    | StageEntered
    | StageSkipped
    | StageFinished
    | StepStarted
    | StepSucceeded
    | StepRetryScheduled
    | StepFailed
    | StepSkipped
    | StepCanceled
    | StepReset
    | TimerScheduled
    | TimerCleared
    | RunStatusChanged
    | RunMigrated
    | ParticipantsJoined,
    Field(discriminator="kind"),
]
EVENT_ADAPTER: TypeAdapter[AnyRunEvent] = TypeAdapter(AnyRunEvent)
