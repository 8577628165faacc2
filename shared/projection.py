"""A compacted topic kept in memory: read whole at start-up, then followed.

A service that needs another service's state (the directory and tokens, the published
definitions) reads it from the owner's topic instead of the owner's collections.  The
projection assigns itself every partition of the topic (no consumer group: each replica
reads everything, and commits nothing), reads from the beginning up to the end offsets of
the moment it starts, and only then lets the service be ready.  It keeps following the
topic afterwards.

A miss is checked exactly, not by a timer: :meth:`TopicProjection.catch_up` asks the
broker for the topic's end offsets now and waits until everything below them is applied.
A producer publishes before it answers the call that made the change, so what a caller
was told is done lies below those offsets and is seen after the catch-up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from contracts import ContractError, Envelope, parse
from shared.kafka_connection import client_options
from shared.settings import ServiceSettings

log = logging.getLogger("baton.projection")
Apply = Callable[[Envelope], None]
DeadLetter = Callable[[ConsumerRecord[Any, Any], str], Awaitable[None]]
# How long one fetch waits for records: it returns as soon as some arrive, so this costs no
# latency, and an idle projection costs the broker a fetch every few seconds, not twice a
# second (there is one per service and followed topic).
POLL_MS = 5000
CATCH_UP_SECONDS = 30.0


class Consumer(Protocol):
    """The part of aiokafka's consumer a projection uses (a fake in unit tests)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def assign(self, partitions: list[TopicPartition]) -> None: ...
    async def seek_to_beginning(self, *partitions: TopicPartition) -> bool: ...
    async def position(self, partition: TopicPartition) -> int: ...
    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]: ...
    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0,
                      max_records: int | None = None
                      ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]: ...


def kafka_consumer(settings: ServiceSettings) -> Callable[[], Consumer]:
    """Makes a consumer of no group: it reads what it is assigned and commits nothing."""

    def make() -> Consumer:
        consumer: Consumer = AIOKafkaConsumer(
            **client_options(settings), group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=POLL_MS)
        return consumer

    return make


class _NotStarted:
    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("the projection has not started")


class TopicProjection:
    def __init__(self, topic: str, apply: Apply, consumer: Callable[[], Consumer], *,
                 partitions: int = 1, dead_letter: DeadLetter | None = None,
                 catch_up_seconds: float = CATCH_UP_SECONDS) -> None:
        self.topic = topic
        self.apply = apply
        self._make_consumer = consumer  # made at start: aiokafka's wants a running loop
        self.consumer: Consumer = _NotStarted()
        self.dead_letter = dead_letter
        self.catch_up_seconds = catch_up_seconds
        # As contracts/topics.py declares them (one, for the topics read whole).
        self.partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self.positions: dict[TopicPartition, int] = {}  # the next offset to apply
        self.applied = 0  # messages applied (tests count the work)
        self.catch_ups = 0  # end offsets asked for (at start-up, and for each miss)
        self._moved = asyncio.Condition()
        self._started = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._rewinding: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read the topic up to its current end; then follow it in the background."""
        self.consumer = self._make_consumer()
        await self.consumer.start()
        self.consumer.assign(self.partitions)
        await self.consumer.seek_to_beginning(*self.partitions)
        for tp in self.partitions:
            self.positions[tp] = await self.consumer.position(tp)
        self._task = asyncio.create_task(self._follow(), name=f"projection {self.topic}")
        self._started.set()
        await self.catch_up()
        log.info("read %s to its end: %d messages", self.topic, self.applied)

    async def stop(self) -> None:
        for task in (self._task, self._rewinding):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._started.is_set():
            await self.consumer.stop()

    async def catch_up(self) -> None:
        """Return once everything published before this call is applied.

        Raises TimeoutError when the broker does not let it within ``catch_up_seconds``
        (the caller then fails as on any unreachable infrastructure, and tries again).
        """
        self.catch_ups += 1
        async with asyncio.timeout(self.catch_up_seconds):
            await self._started.wait()  # a message handled before start-up finished waits
            ends = await self.consumer.end_offsets(self.partitions)
            async with self._moved:
                await self._moved.wait_for(lambda: self._reached(ends))

    async def rewind(self) -> None:
        """Read the topic again from its beginning (the broker lost its data, and its
        owner is publishing its state anew); what is known stays until overwritten.

        The seek is left to run: it lands when the consumer's fetch in flight returns (up
        to ``POLL_MS``), and a service's reconcile need not wait for it, since nothing the
        projection knows is dropped meanwhile.
        """
        if self._started.is_set():
            self._rewinding = asyncio.create_task(self._seek_to_beginning())

    async def _seek_to_beginning(self) -> None:
        try:
            await self.consumer.seek_to_beginning(*self.partitions)
        except KafkaError as exc:  # the next loss, or the owner's next start, publishes again
            log.warning("reading %s again from its beginning: %r", self.topic, exc)

    def _reached(self, ends: dict[TopicPartition, int]) -> bool:
        return all(self.positions.get(tp, 0) >= end for tp, end in ends.items())

    async def _follow(self) -> None:
        while True:
            try:
                batches = await self.consumer.getmany(*self.partitions, timeout_ms=POLL_MS)
            except KafkaError as exc:
                log.warning("reading %s: %r; trying again", self.topic, exc)
                await asyncio.sleep(1.0)
                continue
            for records in batches.values():
                for record in records:
                    await self._apply(record)
            for tp in self.partitions:
                self.positions[tp] = await self.consumer.position(tp)
            async with self._moved:
                self._moved.notify_all()

    async def _apply(self, record: ConsumerRecord[Any, Any]) -> None:
        try:
            envelope = parse(record.value or b"")
        except ContractError as exc:
            await self._refuse(record, f"unparseable: {exc}")
            return
        try:
            self.apply(envelope)
        except Exception as exc:  # a message that is valid but makes no sense here
            log.exception("could not apply %s from %s", envelope.type, self.topic)
            await self._refuse(record, f"handler failed: {exc!r}")
            return
        self.applied += 1

    async def _refuse(self, record: ConsumerRecord[Any, Any], reason: str) -> None:
        log.error("skipped offset %d of %s: %s", record.offset, self.topic, reason[:500])
        if self.dead_letter is not None:
            try:
                await self.dead_letter(record, reason)
            except Exception:  # the projection goes on; the log has said what was skipped
                log.exception("could not dead-letter offset %d of %s", record.offset,
                              self.topic)
