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
from contracts.registry import MAX_MESSAGE_BYTES, plainly_safe, refusal_of_dumped
from services.step_runner.actions import Action, ActionContext, FatalError, RetryableError
from services.step_runner.secrets import SECRET_INPUTS, SecretStore, redact
from shared.outgoing import Outgoing, outgoing, outgoing_all

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
        self._seconds_of: dict[tuple[str, str], Any] = {}

    def _took(self, action: str, outcome: str, seconds: float) -> None:
        """Observe an action's time; the labelled child kept (a lookup cost more)."""
        child = self._seconds_of.get((action, outcome))
        if child is None:
            child = self._seconds_of[(action, outcome)] = self.seconds.labels(action, outcome)
        child.observe(seconds)

    async def __call__(self, envelope: Envelope, durable: bool = True
                       ) -> tuple[dict[str, Any], list[Outgoing]]:
        """The attempt's document to store, and the messages to publish once it is stored
        (encoded once, here).  Only a ``durable`` attempt's document (one that is stored)
        holds its messages as dicts (``messages``)."""
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
            # A timeout around the action's await, not wait_for: that ran the action in a
            # task of its own, a task and a timer more for every attempt.
            async with asyncio.timeout(timeout):
                result = await action.run(inputs, context)
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
        self._took(request.action, kind, (finished - started).total_seconds())
        envelopes = [
            new_event(payload, producer=PRODUCER, cause=envelope, occurred_at=finished,
                      event_id=derived_id(envelope.event_id, "outcome", index), key=None)
            for index, payload in enumerate([outcome, *extra])
        ]
        sent = _plainly_sendable(envelopes)
        refused = None
        messages: list[dict[str, Any]] | None = None
        if sent is None or durable:
            try:
                messages = [e.model_dump(mode="json") for e in envelopes]
                if sent is None:
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
            sent = [outgoing(envelopes[0])]
        document: dict[str, Any] = {
            "_id": request.idempotency_key, "run_id": envelope.run_id, "step": request.step,
            "attempt": request.attempt, "action": request.action, "outcome": kind,
            "started_at": started, "finished_at": finished,
        }
        if messages is not None:
            document["messages"] = messages
        return document, sent if sent is not None else outgoing_all(envelopes)


def _plainly_sendable(envelopes: list[Envelope]) -> list[Outgoing] | None:
    """The messages encoded, when their bytes show that the coordinator will take them:
    what :func:`~contracts.registry.refusal_of_dumped` would pass without a look at the
    values.  None when it cannot tell (it then judges them from their dumped dicts).

    Plainly safe JSON (:func:`~contracts.registry.plainly_safe`) holds nothing the value
    checks refuse, whichever encoder wrote it; a value JSON cannot hold fails to encode;
    and a message of over half the size limit is left to the exact count (the two encoders
    write some floats a character or two apart).  Each message was dumped to a dict and
    that written as JSON to judge it, then encoded again to be sent.
    """
    try:
        sent = outgoing_all(envelopes)
    except (TypeError, ValueError):  # pydantic's serialization error is a ValueError
        return None
    for message in sent:
        if len(message.value) > MAX_MESSAGE_BYTES // 2 or not plainly_safe(message.value):
            return None
    return sent
