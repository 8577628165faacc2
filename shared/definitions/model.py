"""The shape of an orchestration definition (YAML or JSON), as pydantic models.

Structural rules live here (types, required fields, ranges).  Cross-references
(unknown steps, cycles, expressions) are checked by ``validate.py`` so that every
error carries its path in the document.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.definitions.durations import Duration

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StepKind(StrEnum):
    BACKGROUND = "background"
    INTERACTIVE = "interactive"
    APPROVAL = "approval"


class Assignee(StrictModel):
    """Exactly one of the fields: whom a work item goes to."""

    user: str | None = None
    group: str | None = None
    queue: str | None = None
    record_field: str | None = None
    manager_of: str | None = Field(
        default=None, description="a user id, or 'record.<field>' naming one"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Assignee:
        given = [k for k, v in self.model_dump().items() if v]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of user, group, queue, record_field, manager_of"
                f" (got {', '.join(given) or 'none'})"
            )
        return self

    @cached_property
    def kind(self) -> str:
        # The first field given, in field order (a dump of the model, field by field).
        # Cached: a definition's assignees live as long as the definition, and the
        # coordinator asks for each work item it opens.
        return next(k for k in type(self).model_fields if getattr(self, k))

    @cached_property
    def value(self) -> str:
        return str(getattr(self, self.kind))


class Retries(StrictModel):
    max_attempts: int = Field(default=3, ge=1, le=100)
    backoff: Duration = timedelta(seconds=1)
    max_backoff: Duration = timedelta(minutes=5)
    jitter: float = Field(default=0.2, ge=0, le=1)


class EscalationSpec(StrictModel):
    after_due: Duration = timedelta(0)
    action: Literal["reassign_to_manager", "release_to_group", "notify"] = "reassign_to_manager"
    group: str | None = None


class Step(StrictModel):
    name: str = Field(pattern=NAME_PATTERN)
    kind: StepKind = StepKind.BACKGROUND
    title: str | None = None
    # background
    action: str | None = None
    inputs: dict[str, Any] = Field(
        default_factory=dict,
        description="values, or '${expr}' templates evaluated against the run when dispatched",
    )
    outputs: list[str] = Field(
        default_factory=list, description="names of the outputs later conditions may read"
    )
    timeout: Duration = timedelta(seconds=30)
    retries: Retries = Retries()
    # interactive / approval
    assignee: Assignee | None = None
    form: dict[str, Any] | None = Field(default=None, description="JSON Schema for the input")
    due: Duration | None = None
    reminders_before_due: list[Duration] = Field(default_factory=list)
    reminders_after_due: list[Duration] = Field(default_factory=list)
    escalation: EscalationSpec | None = None
    # scheduling inside the stage
    after: list[str] = Field(default_factory=list, description="start when these are completed")
    when: str | None = Field(default=None, description="CEL: start only when this holds")
    sla: Duration | None = Field(default=None, description="stuck when in progress longer")
    optional: bool = Field(default=False, description="a failure does not fail the stage")


class Decision(StrictModel):
    """After the stage: when ``when`` holds, go to ``goto`` (a stage name) or ``end`` the run."""

    when: str = "true"
    goto: str | None = None
    end: bool = False

    @model_validator(mode="after")
    def _one_target(self) -> Decision:
        if bool(self.goto) == self.end:
            raise ValueError("a decision needs exactly one of 'goto: <stage>' or 'end: true'")
        return self


class FaultPath(StrictModel):
    """What a stage does when a step fails after its retries: go to a stage, or Error."""

    goto: str | None = None


class Stage(StrictModel):
    name: str = Field(pattern=NAME_PATTERN)
    entry: str | None = Field(default=None, description="CEL; false skips the stage")
    exit: str | None = Field(default=None, description="CEL; default: all steps are done")
    steps: list[Step] = Field(min_length=1)
    decisions: list[Decision] = Field(default_factory=list)
    on_fault: FaultPath | None = None
    sla: Duration | None = None


RecordChange = Literal["created", "updated", "deleted"]


def _created_or_updated() -> list[RecordChange]:
    return ["created", "updated"]


class RecordTrigger(StrictModel):
    object: str = Field(min_length=1)
    on: list[RecordChange] = Field(default_factory=_created_or_updated, min_length=1)
    when: str | None = Field(default=None, description="CEL over 'new' and 'old'")


class Trigger(StrictModel):
    record: RecordTrigger | None = None
    at_most_one_active_per_record: bool = False


InputType = Literal["string", "number", "integer", "boolean", "object", "array"]


class InputSpec(StrictModel):
    """A run input: checked when a run is started from the API or the CLI."""

    type: InputType = "string"
    required: bool = False
    default: Any = None
    description: str = ""
    pattern: str | None = Field(
        default=None, max_length=500, description="a regular expression a string must match"
    )
    enum: list[Any] | None = Field(
        default=None, min_length=1, max_length=200, description="the values allowed"
    )
    max_length: int | None = Field(
        default=None, ge=0, le=1_000_000, description="the longest a string may be"
    )


class Starters(StrictModel):
    """Who may start runs from the API or the CLI (any of them; admins always may)."""

    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)


class Definition(StrictModel):
    """One version of an orchestration.  ``version`` is given by publishing, not by authors."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")
    version: int = Field(default=0, ge=0)
    description: str = ""
    trigger: Trigger = Trigger()
    starters: Starters | None = Field(
        default=None, description="who may start runs (default: anyone with a token)"
    )
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    record_fields: dict[str, str] | None = Field(
        default=None, description="declared record fields (name -> type); checked when given"
    )
    stages: list[Stage] = Field(min_length=1)

    def stage(self, name: str) -> Stage:
        """The stage named ``name``; StopIteration if there is none (as from a search)."""
        try:
            return self.stages_by_name[name]
        except KeyError:
            raise StopIteration(name) from None

    def stage_index(self, name: str) -> int:
        return next(i for i, s in enumerate(self.stages) if s.name == name)

    def step(self, stage: str, step: str) -> Step:
        """The step ``step`` of stage ``stage``; StopIteration if there is none."""
        try:
            return self.steps_by_name[stage, step]
        except KeyError:
            raise StopIteration(f"{stage}.{step}") from None

    # The coordinator looks stages and steps up by name for nearly every event it decides.
    # A definition is frozen, so its lookups are built once, kept beside its fields (neither
    # compared nor dumped); a copy with other stages (``model_copy(update=...)``) would
    # keep the old ones.  The first of a name wins, as a search would find it.

    @cached_property
    def stages_by_name(self) -> dict[str, Stage]:
        named: dict[str, Stage] = {}
        for stage in self.stages:
            named.setdefault(stage.name, stage)
        return named

    @cached_property
    def steps_by_name(self) -> dict[tuple[str, str], Step]:
        named: dict[tuple[str, str], Step] = {}
        for stage in self.stages_by_name.values():
            for step in stage.steps:
                named.setdefault((stage.name, step.name), step)
        return named
