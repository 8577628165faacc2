"""Run one attempt of a step: fill its secrets, run its action under its timeout, report.

Secrets the step names are filled in just before the action runs and redacted from what
it reports; a step's timeout is capped by the step-runner's ``max_step_timeout_seconds``.
What the action returns is checked against what a message may carry before it becomes
the outcome, so the run always hears an outcome it can read.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

from contracts import Envelope
from contracts.envelope import derived_id, new_event
from contracts.events.steps import StepCompleted, StepFailed, StepRequested
from contracts.registry import refusal_of_dumped
from services.step_runner.actions import Action, ActionContext, FatalError, RetryableError
from services.step_runner.secrets import SECRET_INPUTS, SecretStore, redact

log = logging.getLogger("baton.step_runner")
PRODUCER = "step-runner"


class AttemptRunner:
    def __init__(
        self, actions: dict[str, Action], registry: CollectorRegistry,
        secrets: SecretStore | None = None, max_timeout_seconds: float | None = None,
    ) -> None:
        self.actions = actions
        self.secrets = secrets or SecretStore({})
        self.max_timeout_seconds = max_timeout_seconds
        self.seconds = Histogram(
            "baton_action_seconds", "Time an action took", ["action", "outcome"],
            registry=registry,
        )

    async def __call__(self, envelope: Envelope) -> tuple[dict[str, Any], list[Envelope]]:
        """The attempt's document to store, and the envelopes to publish once it is stored."""
        request: StepRequested = envelope.payload  # type: ignore[assignment]
        started = datetime.now(UTC)
        context = ActionContext(
            run_id=envelope.run_id or "", orchestration=request.orchestration, stage=request.stage,
            step=request.step, attempt=request.attempt, idempotency_key=request.idempotency_key,
            operation_key=request.operation_key, record_key=request.record_key,
        )
        outcome: StepCompleted | StepFailed
        extra: list[Any] = []
        action = self.actions.get(request.action)
        timeout = request.timeout_seconds
        if self.max_timeout_seconds is not None:
            timeout = min(timeout, self.max_timeout_seconds)
        used: dict[str, str] = {}  # the secrets this attempt filled in, redacted from its report
        try:
            if action is None:
                raise FatalError(f"unknown action {request.action!r}")
            inputs = dict(request.inputs)
            used = self.secrets.fill(inputs, SECRET_INPUTS.get(request.action, ()))
            result = await asyncio.wait_for(action.run(inputs, context), timeout)
            outcome = StepCompleted(step=request.step, attempt=request.attempt,
                                    outputs=redact(result.outputs, used))
            extra = result.messages
        except TimeoutError:
            outcome = StepFailed(step=request.step, attempt=request.attempt,
                                 error=f"timed out after {timeout:g}s", retryable=True)
        except RetryableError as exc:
            outcome = StepFailed(step=request.step, attempt=request.attempt,
                                 error=redact(str(exc), used)[:4000])
        except FatalError as exc:
            outcome = StepFailed(step=request.step, attempt=request.attempt,
                                 error=redact(str(exc), used)[:4000], retryable=False)
        except Exception as exc:  # a bug in a custom action: report it, never hang the run
            error = redact(f"action crashed: {exc!r}", used)
            # The traceback repeats the exception's text: kept out of the log with a secret.
            log.error("action %s crashed: %s", request.action, error, exc_info=not used)
            outcome = StepFailed(step=request.step, attempt=request.attempt,
                                 error=error[:4000], retryable=True)
        finished = datetime.now(UTC)
        kind = "completed" if isinstance(outcome, StepCompleted) else "failed"
        self.seconds.labels(request.action, kind).observe((finished - started).total_seconds())
        envelopes = [
            new_event(payload, producer=PRODUCER, cause=envelope, occurred_at=finished,
                      event_id=derived_id(envelope.event_id, "outcome", index), key=None)
            for index, payload in enumerate([outcome, *extra])
        ]
        try:
            messages = [e.model_dump(mode="json") for e in envelopes]
            refused = next(filter(None, map(refusal_of_dumped, messages)), None)
        except (TypeError, ValueError) as exc:  # a value JSON cannot hold (an object)
            refused = f"not JSON: {exc}"
        if refused is not None:
            # What the action returned is beyond what a message may carry (too deep, an
            # integer beyond 64 bits, not JSON): the coordinator would dead-letter the
            # outcome and the run would wait for ever.  The step fails visibly instead.
            kind = "failed"
            failed = StepFailed(step=request.step, attempt=request.attempt, retryable=False,
                                error=f"the action's result cannot be sent to the run: "
                                      f"{refused}"[:4000])
            envelopes = [new_event(failed, producer=PRODUCER, cause=envelope,
                                   occurred_at=finished, key=None,
                                   event_id=derived_id(envelope.event_id, "outcome", 0))]
            messages = [envelopes[0].model_dump(mode="json")]
        document = {
            "_id": request.idempotency_key, "run_id": envelope.run_id, "step": request.step,
            "attempt": request.attempt, "action": request.action, "outcome": kind,
            "started_at": started, "finished_at": finished, "messages": messages,
        }
        return document, envelopes
