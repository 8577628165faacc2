"""runs.events: run and stage lifecycle for listeners, notification and metrics."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from contracts.envelope import Payload
from contracts.topics import RUNS_EVENTS


class RunEvent(Payload):
    TOPIC = RUNS_EVENTS

    orchestration: str
    version: int
    record_key: str | None = None


class RunStarted(RunEvent):
    TYPE = "RunStarted"

    inputs: dict[str, Any] = Field(default_factory=dict)


class RunStartRejected(RunEvent):
    TYPE = "RunStartRejected"

    reason: str


class StageStarted(RunEvent):
    TYPE = "StageStarted"

    stage: str


class StageSkipped(RunEvent):
    TYPE = "StageSkipped"

    stage: str


class StageCompleted(RunEvent):
    TYPE = "StageCompleted"

    stage: str
    duration_seconds: float = 0.0


class StepStatusChanged(RunEvent):
    TYPE = "StepStatusChanged"

    stage: str
    step: str
    status: str
    previous: str
    duration_seconds: float | None = None


class RunCompleted(RunEvent):
    TYPE = "RunCompleted"

    duration_seconds: float = 0.0


class RunErrored(RunEvent):
    TYPE = "RunErrored"

    stage: str
    step: str
    error: str


class RunCanceled(RunEvent):
    TYPE = "RunCanceled"

    reason: str = ""


class RunSuspended(RunEvent):
    TYPE = "RunSuspended"


class RunResumed(RunEvent):
    TYPE = "RunResumed"


class RunMigrated(RunEvent):
    TYPE = "RunMigrated"

    from_version: int
