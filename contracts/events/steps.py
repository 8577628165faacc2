"""steps.dispatch and steps.outcomes: background work and every step's result."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from contracts.envelope import Payload
from contracts.topics import STEPS_DISPATCH, STEPS_OUTCOMES


class StepRequestedV1(Payload):
    """The first StepRequested: one key per attempt only.  Upcast to v2, then v3, at the edge."""

    TYPE = "StepRequested"
    VERSION = 1
    TOPIC = STEPS_DISPATCH

    orchestration: str
    version: int
    stage: str
    step: str
    attempt: int = Field(ge=1)
    action: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=30.0, gt=0)
    idempotency_key: str


class StepRequestedV2(Payload):
    """StepRequested without the run's record: upcast to v3 at the edge."""

    TYPE = "StepRequested"
    VERSION = 2
    TOPIC = STEPS_DISPATCH

    orchestration: str
    version: int
    stage: str
    step: str
    attempt: int = Field(ge=1)
    action: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=30.0, gt=0)
    idempotency_key: str
    operation_key: str


class StepRequested(Payload):
    """Run a background step's action once more (``attempt`` counts from 1).

    ``idempotency_key`` names this attempt (the step-runner runs each attempt once);
    ``operation_key`` names the operation, the same for every attempt of the step in one
    visit of its stage.  Actions hand ``operation_key`` to external systems (the http
    action's Idempotency-Key), so a retry after a timeout or a lost outcome does not
    repeat a side effect the first attempt already caused.

    ``record_key`` ("ObjectType:record_id") names the record the run is about, if any:
    what an action needs of the run travels in its dispatch, so the step-runner reads no
    other service's data.
    """

    TYPE = "StepRequested"
    VERSION = 3
    TOPIC = STEPS_DISPATCH

    orchestration: str
    version: int
    stage: str
    step: str
    attempt: int = Field(ge=1)
    action: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=30.0, gt=0)
    idempotency_key: str
    operation_key: str
    record_key: str | None = None


class StepCompleted(Payload):
    """A step finished; ``outputs`` become visible to later conditions and steps."""

    TYPE = "StepCompleted"
    TOPIC = STEPS_OUTCOMES

    step: str
    attempt: int = Field(ge=1)
    outputs: dict[str, Any] = Field(default_factory=dict)
    completed_by: str = "system"
    decision: Literal["approved", "rejected"] | None = None
    comment: str = ""


class StepFailed(Payload):
    """A step's attempt failed.  ``retryable`` lets the coordinator schedule another."""

    TYPE = "StepFailed"
    TOPIC = STEPS_OUTCOMES

    step: str
    attempt: int = Field(ge=1)
    error: str = Field(max_length=4000)
    retryable: bool = True
