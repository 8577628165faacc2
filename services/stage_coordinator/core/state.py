"""A run's state, and the one transition table per entity (run, stage, step)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field


class RunStatus(StrEnum):
    RUNNING = "running"
    SUSPENDED = "suspended"
    ERROR = "error"
    COMPLETED = "completed"
    CANCELED = "canceled"


class StageStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    SKIPPED = "skipped"
    FAULTED = "faulted"
    DISCONTINUED = "discontinued"


class StepStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    WAITING_RETRY = "waiting_retry"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELED = "canceled"


RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.RUNNING: frozenset(
        {RunStatus.SUSPENDED, RunStatus.ERROR, RunStatus.COMPLETED, RunStatus.CANCELED}
    ),
    RunStatus.SUSPENDED: frozenset({RunStatus.RUNNING, RunStatus.CANCELED}),
    RunStatus.ERROR: frozenset({RunStatus.RUNNING, RunStatus.CANCELED}),
    RunStatus.COMPLETED: frozenset(),
    RunStatus.CANCELED: frozenset(),
}

STAGE_TRANSITIONS: dict[StageStatus, frozenset[StageStatus]] = {
    StageStatus.PENDING: frozenset({StageStatus.IN_PROGRESS, StageStatus.SKIPPED}),
    StageStatus.IN_PROGRESS: frozenset(
        {StageStatus.COMPLETED, StageStatus.FAULTED, StageStatus.DISCONTINUED}
    ),
    # A decision may send the run back to a finished stage: it starts over.
    StageStatus.COMPLETED: frozenset({StageStatus.IN_PROGRESS, StageStatus.SKIPPED}),
    StageStatus.SKIPPED: frozenset({StageStatus.IN_PROGRESS, StageStatus.SKIPPED}),
    StageStatus.FAULTED: frozenset({StageStatus.IN_PROGRESS, StageStatus.SKIPPED}),
    StageStatus.DISCONTINUED: frozenset({StageStatus.IN_PROGRESS, StageStatus.SKIPPED}),
}

_STEP_RESTART = frozenset({StepStatus.PENDING})
STEP_TRANSITIONS: dict[StepStatus, frozenset[StepStatus]] = {
    StepStatus.PENDING: frozenset(
        {StepStatus.IN_PROGRESS, StepStatus.SKIPPED, StepStatus.CANCELED}
    ),
    StepStatus.IN_PROGRESS: frozenset(
        {
            StepStatus.COMPLETED,
            StepStatus.FAILED,
            StepStatus.WAITING_RETRY,
            StepStatus.CANCELED,
            StepStatus.SKIPPED,
        }
    ),
    StepStatus.WAITING_RETRY: frozenset(
        {StepStatus.IN_PROGRESS, StepStatus.CANCELED, StepStatus.SKIPPED}
    ),
    # Terminal for this visit of the stage; a stage re-entry or an operator retry resets them.
    StepStatus.COMPLETED: _STEP_RESTART,
    StepStatus.FAILED: _STEP_RESTART | {StepStatus.SKIPPED},
    StepStatus.SKIPPED: _STEP_RESTART,
    StepStatus.CANCELED: _STEP_RESTART,
}

STEP_DONE = frozenset({StepStatus.COMPLETED, StepStatus.SKIPPED})
STEP_SETTLED = STEP_DONE | {StepStatus.FAILED, StepStatus.CANCELED}
STEP_ACTIVE = frozenset({StepStatus.IN_PROGRESS, StepStatus.WAITING_RETRY})
RUN_ACTIVE = frozenset({RunStatus.RUNNING, RunStatus.SUSPENDED, RunStatus.ERROR})


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


M = TypeVar("M", bound=Model)
_new = object.__new__
_set = object.__setattr__


def copied(state: M, changes: dict[str, Any]) -> M:
    """``state.model_copy(update=changes)``, at half its cost: evolve copies a state for
    nearly every event it applies (copy on write, ``Run.fork``).

    Like ``model_copy``, it validates nothing (the decider checked what evolve sets) and
    the copy is shallow; unlike it, it goes through neither ``copy.copy`` nor a
    ``__setattr__`` per field.  The states have no extra fields and no private ones.
    """
    copy = _new(type(state))
    values = state.__dict__.copy()
    values.update(changes)
    _set(copy, "__dict__", values)
    # union() of the dict (its keys): ``set | dict.keys()`` falls back to the view's own
    # __ror__, which builds the set twice.
    _set(copy, "__pydantic_fields_set__", state.__pydantic_fields_set__.union(changes))
    _set(copy, "__pydantic_extra__", None)
    _set(copy, "__pydantic_private__", None)
    return copy


class StepState(Model):
    name: str
    stage: str
    kind: str
    status: StepStatus = StepStatus.PENDING
    attempt: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    completed_by: str | None = None
    decision: str | None = None
    comment: str | None = None


class StageState(Model):
    name: str
    status: StageStatus = StageStatus.PENDING
    started_at: datetime | None = None
    finished_at: datetime | None = None
    visits: int = 0


class Timer(Model):
    id: str
    due_at: datetime
    purpose: str  # "retry" | "wait"
    step: str | None = None
    epoch: int = 0


class Run(Model):
    """One run, as stored: one document, one writer, guarded by ``revision``."""

    id: str
    orchestration: str
    version: int
    status: RunStatus = RunStatus.RUNNING
    record: dict[str, Any] = Field(default_factory=dict)
    record_key: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    vars: dict[str, Any] = Field(default_factory=dict)
    stage: str | None = None
    stages: dict[str, StageState] = Field(default_factory=dict)
    steps: dict[str, StepState] = Field(default_factory=dict)
    timers: list[Timer] = Field(default_factory=list)
    started_by: str = "system"
    # Who may see the run besides admins and operators: user:, group: and queue: keys
    # (core/participants.py).
    participants: list[str] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    error: str | None = None
    stage_entries: int = 0
    exclusive_per_record: bool = False
    # The last attempt of steps a migration removed: if a later migration brings a step
    # back, its attempts go on from there, so idempotency keys and timer ids never repeat.
    retired_attempts: dict[str, int] = Field(default_factory=dict)
    # Kept by evolve: the number of domain events applied since RunCreated, i.e. the length
    # of the run's history.  It grows with every change, and replaying the history
    # rebuilds it, so a write conditional on it cannot lose an update.
    revision: int = 0

    def fork(self) -> Run:
        """A copy to change: its containers are its own, the states in them are shared.

        evolve changes no stage, step or timer in place: it puts a changed copy into the
        run's own container (copy on write), so a fork copies seven containers rather than
        every state of the run, and a message that changes one step copies that step only.
        The JSON values inside (record, inputs, vars, a step's outputs) are shared likewise:
        evolve replaces them and never changes one in place.
        """
        return copied(self, {
            "record": dict(self.record), "inputs": dict(self.inputs), "vars": dict(self.vars),
            "stages": dict(self.stages), "steps": dict(self.steps), "timers": list(self.timers),
            "participants": list(self.participants),
            "retired_attempts": dict(self.retired_attempts),
        })

    @property
    def active(self) -> bool:
        return self.status in RUN_ACTIVE

    def steps_of(self, stage: str) -> list[StepState]:
        return [s for s in self.steps.values() if s.stage == stage]
