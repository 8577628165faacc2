"""runs.events: run and stage lifecycle for listeners, notification and metrics.

One message per move of a run (decision 17).  The message that says what ended names what
begins: RunStarted names the stage the run entered, a StageCompleted the stage it moved on
to, and RunCompleted the stage whose completion ended the run.  So a stage starts with a
RunStarted (``stage``), a StageCompleted (``next_stage``) or, when nothing finished as it
began (a fault path's ``goto``, a resumed run that had not entered a stage yet), a
StageStarted; a stage completes with a StageCompleted or a RunCompleted (``stage``).
"""

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


class RunStartedV1(RunEvent):
    """Before decision 17: a StageStarted followed for the first stage.  Upcast to v2."""

    TYPE = "RunStarted"
    VERSION = 1

    inputs: dict[str, Any] = Field(default_factory=dict)


class RunStarted(RunEvent):
    """The run started and entered ``stage``; None when it entered none (every stage was
    skipped, and a RunCompleted follows, or it failed at once, and a RunErrored follows)."""

    TYPE = "RunStarted"
    VERSION = 2

    inputs: dict[str, Any] = Field(default_factory=dict)
    stage: str | None = None


class RunStartRejected(RunEvent):
    TYPE = "RunStartRejected"

    reason: str


class StageStarted(RunEvent):
    """A stage entered without another one completing: a fault path's ``goto``, or the first
    stage of a resumed run that had failed before entering one.  Otherwise the RunStarted or
    StageCompleted of the move names the stage entered."""

    TYPE = "StageStarted"

    stage: str


class StageSkipped(RunEvent):
    TYPE = "StageSkipped"

    stage: str


class StageCompletedV1(RunEvent):
    """Before decision 17: a StageStarted or RunCompleted followed.  Upcast to v2."""

    TYPE = "StageCompleted"
    VERSION = 1

    stage: str
    duration_seconds: float = 0.0


class StageCompleted(RunEvent):
    """``stage`` completed and the run entered ``next_stage``.

    Its producer always names the next stage (the last stage of a run completes with the
    RunCompleted); None only in an upcast v1 message, which a StageStarted or RunCompleted
    followed.
    """

    TYPE = "StageCompleted"
    VERSION = 2

    stage: str
    duration_seconds: float = 0.0
    next_stage: str | None = None


class StepStatusChanged(RunEvent):
    """Registered, not published: a message per step change would double runs.events on
    the hot path (decision 17); the run history records every step change."""

    TYPE = "StepStatusChanged"

    stage: str
    step: str
    status: str
    previous: str
    duration_seconds: float | None = None


class RunCompletedV1(RunEvent):
    """Before decision 17: a StageCompleted for the last stage came before it.  Upcast to v2."""

    TYPE = "RunCompleted"
    VERSION = 1

    duration_seconds: float = 0.0


class RunCompleted(RunEvent):
    """The run completed, ``duration_seconds`` after it was created.

    ``stage`` is the stage whose completion ended it (it lasted ``stage_duration_seconds``);
    None when the run ended without completing one (it skipped every stage), and in an
    upcast v1 message, which a StageCompleted preceded.
    """

    TYPE = "RunCompleted"
    VERSION = 2

    duration_seconds: float = 0.0
    stage: str | None = None
    stage_duration_seconds: float = 0.0


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
