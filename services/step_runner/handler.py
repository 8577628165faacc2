"""Runs dispatched steps: at most one stored outcome per attempt, published after it is stored.

Per batch: one find (which attempts already have an outcome), the new attempts run
concurrently, one bulk write of their outcomes, then the outcomes are published.  A
redelivered attempt whose outcome is stored is re-published, never re-run.  A crash
while an action runs leaves no outcome: the redelivery runs it again with the same
idempotency key, which the action hands to the systems it calls.

Secrets the step names are filled in just before the action runs and redacted from what
it reports; a step's timeout is capped by the step-runner's ``max_step_timeout_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from contracts import Envelope, parse_dict
from contracts.envelope import derived_id, new_event
from contracts.events.steps import StepCompleted, StepFailed, StepRequested
from contracts.registry import refusal
from services.step_runner.actions import Action, ActionContext, FatalError, RetryableError
from services.step_runner.secrets import SECRET_INPUTS, SecretStore, redact
from shared.messaging import Publisher
from shared.mongo import Index

log = logging.getLogger("baton.step_runner")
PRODUCER = "step-runner"
ATTEMPTS = "step_attempts"
RUNS = "runs"
INDEXES = [Index(ATTEMPTS, [("run_id", 1)]), Index(ATTEMPTS, [("finished_at", -1)])]


class StepHandler:
    def __init__(
        self, db: AsyncDatabase[dict[str, Any]], actions: dict[str, Action], publisher: Publisher,
        registry: CollectorRegistry, secrets: SecretStore | None = None,
        max_timeout_seconds: float | None = None,
    ) -> None:
        self.attempts = db[ATTEMPTS]
        self.runs = db[RUNS]  # read-only: the coordinator is the only writer of runs
        self.actions = actions
        self.publisher = publisher
        self.secrets = secrets or SecretStore({})
        self.max_timeout_seconds = max_timeout_seconds
        self.seconds = Histogram(
            "baton_action_seconds", "Time an action took", ["action", "outcome"],
            registry=registry,
        )
        self.replayed = Counter(
            "baton_step_outcomes_replayed_total",
            "Redelivered dispatches answered from the stored outcome", registry=registry,
        )

    async def __call__(self, envelopes: list[Envelope]) -> None:
        requests = [e for e in envelopes if isinstance(e.payload, StepRequested)]
        keys = [e.payload.idempotency_key for e in requests]  # type: ignore[attr-defined]
        done = {doc["_id"]: doc async for doc in self.attempts.find({"_id": {"$in": keys}})}
        fresh: dict[str, Envelope] = {}
        replay: list[Envelope] = []
        for envelope in requests:
            key = envelope.payload.idempotency_key  # type: ignore[attr-defined]
            if key in done:
                replay.extend(parse_dict(m) for m in done[key]["messages"])
                self.replayed.inc()
            else:
                fresh.setdefault(key, envelope)
        records = await self._record_keys(list(fresh.values()))
        results = await asyncio.gather(
            *(self._run(e, records.get(e.run_id or "")) for e in fresh.values())
        )
        if results:
            await self.attempts.bulk_write(
                [UpdateOne({"_id": doc["_id"]}, {"$setOnInsert": doc}, upsert=True)
                 for doc in results],
                ordered=False,
            )
        await self.publisher.publish(
            [*replay, *(parse_dict(m) for doc in results for m in doc["messages"])]
        )

    async def _record_keys(self, envelopes: list[Envelope]) -> dict[str, str]:
        """The record each run is about, for the actions that need it (one read per batch).

        StepRequested does not carry the record, so it is read from the run's document
        (written before the dispatch was published).
        """
        run_ids = {
            e.run_id for e in envelopes
            if e.run_id and getattr(self.actions.get(e.payload.action),  # type: ignore[attr-defined]
                                    "needs_record", False)
        }
        if not run_ids:
            return {}
        return {
            doc["_id"]: doc["record_key"]
            async for doc in self.runs.find({"_id": {"$in": list(run_ids)}}, {"record_key": 1})
            if doc.get("record_key")
        }

    async def _run(self, envelope: Envelope, record_key: str | None = None) -> dict[str, Any]:
        request: StepRequested = envelope.payload  # type: ignore[assignment]
        started = datetime.now(UTC)
        context = ActionContext(
            run_id=envelope.run_id or "", orchestration=request.orchestration, stage=request.stage,
            step=request.step, attempt=request.attempt, idempotency_key=request.idempotency_key,
            operation_key=request.operation_key, record_key=record_key,
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
        refused = next(filter(None, map(refusal, envelopes)), None)
        if refused is not None:
            # What the action returned is beyond what a message may carry (too deep, an
            # integer beyond 64 bits): the coordinator would dead-letter the outcome and
            # the run would wait for ever.  The step fails visibly instead.
            kind = "failed"
            failed = StepFailed(step=request.step, attempt=request.attempt, retryable=False,
                                error=f"the action's result cannot be sent to the run: "
                                      f"{refused}"[:4000])
            envelopes = [new_event(failed, producer=PRODUCER, cause=envelope,
                                   occurred_at=finished, key=None,
                                   event_id=derived_id(envelope.event_id, "outcome", 0))]
        messages = [e.model_dump(mode="json") for e in envelopes]
        return {
            "_id": request.idempotency_key, "run_id": envelope.run_id, "step": request.step,
            "attempt": request.attempt, "action": request.action, "outcome": kind,
            "started_at": started, "finished_at": finished, "messages": messages,
        }
