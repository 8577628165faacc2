"""Runs dispatched steps, each in its own task: one slow action never delays another step.

Guarantees (docs/decisions/0013-step-runner-concurrency.md):

- At most one stored outcome per attempt (its idempotency key).  A redelivered attempt
  whose outcome is stored is re-published from the store, never re-run; one running in
  this process is not started a second time.
- An outcome is stored before it is published.
- :meth:`StepHandler.accept` answers each message with a future that is done only once
  its outcome is stored and published.  The consumer commits a partition's offset up to
  its first message not done (services/step_runner/consumer.py), so after a crash every
  dispatch whose outcome is not stored is delivered again and runs again, with the same
  idempotency key (which the action hands to the systems it calls).

An action that declares itself replayable (no side effects; the same outcome every time,
with event ids derived from the dispatch: ``noop``, ``set_variables``...) has no stored
outcome at all: a redelivered dispatch runs it again and the run drops the repeated outcome
by its event id.  Such steps cost the store nothing.

Costs: one read per consumed batch (which attempts are stored) when it has steps that are
not replayable.  Outcomes that finish
while a write is in flight are stored together by the next one (one bulk write, then one
publish), so a burst costs a round trip per group of steps, not per step.  At most
``concurrency`` attempts run or wait to be stored at once; beyond that, accepting a batch
waits for a free slot, and the consumer stops fetching meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from contracts import Envelope, parse_dict
from contracts.events.steps import StepRequested
from services.step_runner.actions import Action, replayable
from services.step_runner.attempt import AttemptRunner
from services.step_runner.attempts import AttemptStore
from services.step_runner.secrets import SecretStore
from shared.messaging import Publisher
from shared.outgoing import Outgoing, outgoing_all

log = logging.getLogger("baton.step_runner")
# An attempt that ran: its document, its messages, its answer, whether it is stored.
Finished = tuple[dict[str, Any], list[Outgoing], "asyncio.Future[None]", bool]
LONGEST_RETRY_WAIT = 5.0


class StepHandler:
    def __init__(
        self, attempts: AttemptStore, actions: dict[str, Action], publisher: Publisher,
        registry: CollectorRegistry, secrets: SecretStore | None = None,
        max_timeout_seconds: float | None = None, concurrency: int = 64,
    ) -> None:
        self.attempts = attempts
        self.run_attempt = AttemptRunner(actions, registry, secrets, max_timeout_seconds)
        self.publisher = publisher
        self.replayed = Counter(
            "baton_step_outcomes_replayed_total",
            "Redelivered dispatches answered from the stored outcome", registry=registry,
        )
        self.slots = asyncio.Semaphore(concurrency)
        self.running: dict[str, asyncio.Future[None]] = {}  # by idempotency key
        self.tasks: set[asyncio.Task[None]] = set()
        self.finished: list[Finished] = []  # run, waiting to be stored and published
        self.writer: asyncio.Task[None] | None = None

    async def __call__(self, envelopes: list[Envelope]) -> None:
        """Run a batch and return once every outcome is stored and published."""
        await asyncio.gather(*await self.accept(envelopes))

    async def accept(self, envelopes: Sequence[Envelope]) -> list[asyncio.Future[None]]:
        """Start the batch's new attempts; one future per envelope, done once it is answered.

        Returns as soon as every new attempt has a slot and has started (it does not wait
        for any action).  What is not a StepRequested, and a redelivered attempt whose
        outcome is stored (re-published here), is answered at once.
        """
        keys = [e.payload.idempotency_key if isinstance(e.payload, StepRequested) else None
                for e in envelopes]
        futures = {key: self.running[key] for key in keys if key in self.running}
        new: dict[str, Envelope] = {}
        for key, envelope in zip(keys, envelopes, strict=True):
            if key is not None and key not in futures:
                new.setdefault(key, envelope)
        stored = await self.attempts.stored(
            key for key, envelope in new.items() if self._durable(envelope))
        if stored:
            self.replayed.inc(len(stored))
            await self.publisher.publish(
                [parse_dict(message) for doc in stored.values() for message in doc["messages"]]
            )
        for key, envelope in new.items():
            if key in stored:
                continue
            if key not in self.running:  # (another batch may have started it meanwhile)
                await self.slots.acquire()
                self.running[key] = self._start(envelope)
            futures[key] = self.running[key]
        answered = asyncio.get_running_loop().create_future()
        answered.set_result(None)
        return [futures.get(key, answered) if key else answered for key in keys]

    def _start(self, envelope: Envelope) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._attempt(envelope, future))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return future

    async def _attempt(self, envelope: Envelope, future: asyncio.Future[None]) -> None:
        key = envelope.payload.idempotency_key  # type: ignore[attr-defined]
        durable = self._durable(envelope)
        try:
            document, outgoing = await self.run_attempt(envelope, durable)
        except BaseException as exc:  # stopped, or a bug outside the action: nothing stored
            self.running.pop(key, None)
            self.slots.release()
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
                raise
            log.exception("step %s could not be run", key)
            future.set_exception(exc)
            return
        self.finished.append((document, outgoing, future, durable))
        if self.writer is None or self.writer.done():
            self.writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        """Store what finished, publish it, then answer it; again while more finished."""
        wait = 0.05
        while self.finished:
            batch, self.finished = self.finished, []
            try:
                stored = await self.attempts.save(
                    [document for document, _, _, durable in batch if durable])
                await self.publisher.send(_outgoing(batch, stored))
            except Exception:
                # MongoDB or Kafka is away: keep the outcomes (their offsets stay
                # uncommitted, so a crash meanwhile runs the attempts again) and try again.
                log.exception("storing or publishing %d step outcomes failed; trying again",
                              len(batch))
                self.finished = batch + self.finished
                await asyncio.sleep(wait)
                wait = min(wait * 2, LONGEST_RETRY_WAIT)
                continue
            wait = 0.05
            for document, _, future, _ in batch:
                self.running.pop(document["_id"], None)
                self.slots.release()
                if not future.done():
                    future.set_result(None)

    def _durable(self, envelope: Envelope) -> bool:
        """Whether the attempt's outcome is stored (its action is not replayable)."""
        request: StepRequested = envelope.payload  # type: ignore[assignment]
        return not replayable(self.run_attempt.actions.get(request.action))

    async def stop(self) -> None:
        """Abandon the attempts still running: nothing of theirs is stored or answered."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.writer is not None:
            self.writer.cancel()
            await asyncio.gather(self.writer, return_exceptions=True)


def _outgoing(batch: list[Finished], stored: list[dict[str, Any]]) -> list[Outgoing]:
    """The messages of each outcome: this run's, or an earlier delivery's that was stored first."""
    messages: list[Outgoing] = []
    kept_of = iter(stored)
    for document, outgoing, _, durable in batch:
        kept = next(kept_of) if durable else document
        if kept is document:
            messages.extend(outgoing)
        else:
            messages.extend(outgoing_all(parse_dict(message) for message in kept["messages"]))
    return messages
