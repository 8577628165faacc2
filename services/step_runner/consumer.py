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
from aiokafka.errors import KafkaError
from faststream import AckPolicy

from contracts import Envelope
from services.step_runner.handler import StepHandler
from shared.messaging import BatchConsumer

log = logging.getLogger("baton.step_runner.consumer")


class Watermarks:
    """Per partition: the offsets handed over and not answered yet, and what is safe to commit."""

    def __init__(self) -> None:
        self.pending: dict[TopicPartition, set[int]] = {}
        self.ends: dict[TopicPartition, int] = {}

    def started(self, tp: TopicPartition, offset: int) -> None:
        self.pending.setdefault(tp, set()).add(offset)
        self.ends[tp] = max(self.ends.get(tp, 0), offset + 1)

    def finished(self, tp: TopicPartition, offset: int) -> None:
        self.pending.get(tp, set()).discard(offset)

    def safe(self) -> dict[TopicPartition, int]:
        """The offset each partition may commit: its first unanswered one, or its end."""
        return {tp: min(self.pending[tp]) if self.pending[tp] else end
                for tp, end in self.ends.items()}

    def keep_only(self, assigned: set[TopicPartition]) -> None:
        """Forget partitions this consumer no longer owns (their next owner reads again)."""
        for tp in [tp for tp in self.ends if tp not in assigned]:
            del self.ends[tp]
            self.pending.pop(tp, None)


class StepConsumer(BatchConsumer):
    ack_policy = AckPolicy.MANUAL  # offsets are committed here, as outcomes are stored

    def __init__(self, *, handler: StepHandler, **kwargs: Any) -> None:
        super().__init__(handler=handler, **kwargs)
        self.steps = handler
        self.watermarks = Watermarks()
        self.committed: dict[TopicPartition, int] = {}
        self._dirty = False
        self._committer: asyncio.Task[None] | None = None
        self._dead_letters: set[asyncio.Task[None]] = set()

    async def forget_positions(self) -> None:
        """After the broker lost its data: offsets on the lost log mean nothing any more."""
        self.watermarks = Watermarks()
        self.committed = {}

    @property
    def client(self) -> Any:
        return getattr(self.subscriber, "consumer", None)

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
            self._rewind(records)
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

    def _rewind(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        client = self.client
        if client is None:
            return
        earliest: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            earliest[tp] = min(earliest.get(tp, record.offset), record.offset)
        for tp, offset in earliest.items():
            client.seek(tp, offset)

    def commit_soon(self) -> None:
        """Commit what is safe, once per burst of answers (a commit in flight is followed)."""
        self._dirty = True
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_while_dirty())

    async def _commit_while_dirty(self) -> None:
        while self._dirty:
            self._dirty = False
            await self.commit()

    async def commit(self) -> None:
        client = self.client
        if client is None:
            return
        assigned = set(client.assignment())
        self.watermarks.keep_only(assigned)
        self.committed = {tp: o for tp, o in self.committed.items() if tp in assigned}
        offsets = {tp: offset for tp, offset in self.watermarks.safe().items()
                   if self.committed.get(tp) != offset}
        if not offsets:
            return
        try:
            await client.commit(offsets)
        except KafkaError as exc:  # a rebalance: the next commit (or owner) takes it up
            log.info("committing %s offsets failed: %r", self.topic, exc)
            return
        self.committed.update(offsets)
