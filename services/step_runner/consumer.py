"""Consumes steps.dispatch without waiting for slow steps; offsets follow stored outcomes.

The step handler accepts a batch (each new attempt starts in its own task) and answers each
message with a future, done once its outcome is stored and published.  The consumer goes on
fetching, and commits each partition's offset up to its first message not yet answered,
never past it: after a crash or a rebalance the next owner reads again from there.  What
was stored meanwhile is answered from the store; the rest runs again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from contracts import Envelope
from services.step_runner.handler import StepHandler
from shared.messaging import BatchConsumer

log = logging.getLogger("baton.step_runner.consumer")


class StepConsumer(BatchConsumer):
    """Offsets follow the stored outcomes: each message finishes when its step's outcome is
    stored (the base's watermarks and committer), not when the batch was handed over."""

    def __init__(self, *, handler: StepHandler, **kwargs: Any) -> None:
        super().__init__(handler=handler, **kwargs)
        self.steps = handler
        self._dead_letters: set[asyncio.Task[None]] = set()

    async def consume(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        started = time.perf_counter()
        handed: list[tuple[TopicPartition, int, Envelope]] = []
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            self.watermarks.started(tp, record.offset)
            envelope = await self.accepted(record)
            if envelope is None:  # dead-lettered
                self.watermarks.finished(tp, record.offset)
            else:
                handed.append((tp, record.offset, envelope))
        try:
            futures = await self.steps.accept([envelope for _, _, envelope in handed])
        except Exception:
            # The batch stays unanswered (its offsets pending): read it again.
            log.warning("accepting a batch of %s failed; reading it again", self.topic)
            await asyncio.sleep(1.0)
            self.rewind(records)
            raise
        for (tp, offset, envelope), future in zip(handed, futures, strict=True):
            future.add_done_callback(functools.partial(self._answered, tp, offset, envelope))
        self.metrics.handler_seconds.labels(self.metrics.service, self.topic).observe(
            time.perf_counter() - started
        )
        self.commit_soon()

    def _answered(self, tp: TopicPartition, offset: int, envelope: Envelope,
                  future: asyncio.Future[None]) -> None:
        if future.cancelled():
            return  # abandoned (stopping): not stored, so it is read again
        error = future.exception()
        if error is None:
            self.watermarks.finished(tp, offset)
            self.commit_soon()
            return
        task = asyncio.create_task(self._dead_letter_then_finish(tp, offset, envelope, error))
        self._dead_letters.add(task)
        task.add_done_callback(self._dead_letters.discard)

    async def _dead_letter_then_finish(self, tp: TopicPartition, offset: int,
                                       envelope: Envelope, error: BaseException) -> None:
        await self.dead_letter_envelope(envelope, f"handler failed: {error!r}")
        self.watermarks.finished(tp, offset)
        self.commit_soon()
