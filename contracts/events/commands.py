"""commands: what starts and steers runs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from contracts.envelope import Payload
from contracts.topics import COMMANDS


class RecordRef(BaseModel):
    """The record a run is about."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    object_type: str
    record_id: str
    fields: dict[str, Any] = Field(default_factory=dict)


class StartRunV1(Payload):
    """The first published StartRun: no record, no dedupe key.  Upcast to v2 at the edge."""

    TYPE = "StartRun"
    VERSION = 1
    TOPIC = COMMANDS

    orchestration_name: str
    variables: dict[str, Any] = Field(default_factory=dict)


class StartRun(Payload):
    """Start a run of an orchestration, pinned to ``version`` (the latest when None)."""

    TYPE = "StartRun"
    VERSION = 2
    TOPIC = COMMANDS

    orchestration: str = Field(min_length=1, max_length=200)
    version: int | None = Field(default=None, ge=1)
    inputs: dict[str, Any] = Field(default_factory=dict)
    record: RecordRef | None = None
    requested_by: str = "system"
    at_most_one_active_per_record: bool = False


class RunControl(Payload):
    """Fields shared by the operator's run-control commands."""

    requested_by: str = "system"
    reason: str = ""


class CancelRun(RunControl):
    TYPE = "CancelRun"
    TOPIC = COMMANDS


class SuspendRun(RunControl):
    TYPE = "SuspendRun"
    TOPIC = COMMANDS


class ResumeRun(RunControl):
    TYPE = "ResumeRun"
    TOPIC = COMMANDS


class RetryStep(RunControl):
    TYPE = "RetryStep"
    TOPIC = COMMANDS

    step: str


class SkipStep(RunControl):
    TYPE = "SkipStep"
    TOPIC = COMMANDS

    step: str
    outputs: dict[str, Any] = Field(default_factory=dict)


class MigrateRun(RunControl):
    """Move an in-flight run to another version of its orchestration (by stage/step name)."""

    TYPE = "MigrateRun"
    TOPIC = COMMANDS

    to_version: int = Field(ge=1)


class TimerFired(Payload):
    """A run timer came due (retry back-off, a wait, a step timeout).  Stale epochs do nothing."""

    TYPE = "TimerFired"
    TOPIC = COMMANDS

    timer_id: str
    purpose: str
    step: str | None = None
    epoch: int = 0
