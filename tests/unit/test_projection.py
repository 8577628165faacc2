"""shared/projection.py with a fake consumer: read to the end before ready, then follow;
a catch-up waits exactly for what was published before it; bad messages are set aside."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from contracts import Envelope, encode
from contracts.envelope import new_event
from contracts.events.definitions import DefinitionPublished
from shared.definitions.catalog import DefinitionCatalog
from shared.definitions.store import UnknownDefinition
from shared.projection import TopicProjection

TOPIC = "definitions"
TP = TopicPartition(TOPIC, 0)


class FakeLog:
    """One partition; ``delivering`` False stands for a broker that sends nothing."""

    def __init__(self) -> None:
        self.values: list[bytes] = []
        self.arrived = asyncio.Event()
        self.delivering = True

    def append(self, value: bytes) -> None:
        self.values.append(value)
        self.arrived.set()


class FakeConsumer:
    def __init__(self, log: FakeLog) -> None:
        self.log = log
        self.position_ = 0
        self.end_offset_requests = 0
        self.stopped = False

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True

    def assign(self, partitions: list[TopicPartition]) -> None:
        assert partitions == [TP]

    async def seek_to_beginning(self, *partitions: TopicPartition) -> bool:
        self.position_ = 0
        return True

    async def position(self, partition: TopicPartition) -> int:
        return self.position_

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        self.end_offset_requests += 1
        return {TP: len(self.log.values)}

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0,
                      max_records: int | None = None
                      ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        if not self.log.delivering or self.position_ >= len(self.log.values):
            self.log.arrived.clear()
            try:
                await asyncio.wait_for(self.log.arrived.wait(), timeout_ms / 1000)
            except TimeoutError:
                return {}
            if not self.log.delivering:
                return {}
        records = [ConsumerRecord(TOPIC, 0, offset, 0, 0, None, value, None, 0, 0, [])
                   for offset, value in enumerate(self.log.values[self.position_:],
                                                  self.position_)]
        self.position_ = len(self.log.values)
        return {TP: records}


def published(name: str, version: int) -> bytes:
    payload = DefinitionPublished(
        name=name, version=version, published_by="dana",
        published_at="2025-03-04T09:15:00Z",  # type: ignore[arg-type]
        definition={"name": name, "version": version, "stages": [
            {"name": "only", "steps": [{"name": "greet", "action": "noop"}]}]})
    return encode(new_event(payload, producer="trigger", key=payload.key))


class Applied:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.dead: list[tuple[int, str]] = []

    def apply(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    async def dead_letter(self, record: ConsumerRecord[Any, Any], reason: str) -> None:
        self.dead.append((record.offset, reason))


@pytest.fixture
def log() -> FakeLog:
    topic = FakeLog()
    for version in (1, 2, 3):
        topic.append(published("hello", version))
    return topic


async def test_start_reads_the_topic_to_its_end_then_follows_it(log: FakeLog) -> None:
    applied = Applied()
    projection = TopicProjection(TOPIC, applied.apply, lambda: FakeConsumer(log))
    await projection.start()
    try:
        assert [e.payload.version for e in applied.envelopes] == [1, 2, 3]
        log.append(published("hello", 4))
        await projection.catch_up()
        assert [e.payload.version for e in applied.envelopes] == [1, 2, 3, 4]
        assert projection.applied == 4
    finally:
        await projection.stop()
    assert projection.consumer.stopped  # type: ignore[attr-defined]


async def test_a_catch_up_asks_for_the_end_once_and_waits_for_what_lies_below_it(
    log: FakeLog,
) -> None:
    applied = Applied()
    consumer = FakeConsumer(log)
    projection = TopicProjection(TOPIC, applied.apply, lambda: consumer)
    await projection.start()
    try:
        asked = consumer.end_offset_requests
        log.delivering = False  # the fetch is slow: published, not read yet
        log.append(published("hello", 4))
        waiting = asyncio.create_task(projection.catch_up())
        for _ in range(20):
            await asyncio.sleep(0)
        assert not waiting.done() and len(applied.envelopes) == 3
        log.delivering = True
        log.arrived.set()
        await waiting
        assert len(applied.envelopes) == 4
        assert consumer.end_offset_requests == asked + 1
    finally:
        await projection.stop()


async def test_a_catch_up_the_broker_does_not_let_finish_times_out(log: FakeLog) -> None:
    projection = TopicProjection(TOPIC, Applied().apply, lambda: FakeConsumer(log),
                                 catch_up_seconds=0.05)
    await projection.start()
    try:
        log.delivering = False
        log.append(published("hello", 4))
        with pytest.raises(TimeoutError):
            await projection.catch_up()
    finally:
        await projection.stop()


async def test_what_cannot_be_parsed_or_applied_is_dead_lettered_and_the_rest_applied(
    log: FakeLog,
) -> None:
    log.append(b"{ not json")
    log.append(published("hello", 5))
    applied = Applied()
    projection = TopicProjection(TOPIC, applied.apply, lambda: FakeConsumer(log),
                                 dead_letter=applied.dead_letter)
    await projection.start()
    await projection.stop()
    assert [e.payload.version for e in applied.envelopes] == [1, 2, 3, 5]
    assert applied.dead[0][0] == 3 and applied.dead[0][1].startswith("unparseable")


async def test_a_restart_rebuilds_the_same_catalog_from_the_topic(log: FakeLog) -> None:
    catalogs = []
    for _ in range(2):  # the service, then the same service started again
        catalog = DefinitionCatalog()
        catalog.projection = TopicProjection(TOPIC, catalog.apply, lambda: FakeConsumer(log))
        await catalog.projection.start()
        catalogs.append(catalog)
        await catalog.projection.stop()
    for catalog in catalogs:
        assert (await catalog.get("hello", 2)).version == 2
        assert (await catalog.get("hello")).version == 3


async def test_a_version_published_a_moment_ago_is_found_by_one_catch_up(
    log: FakeLog,
) -> None:
    catalog = DefinitionCatalog()
    projection = TopicProjection(TOPIC, catalog.apply, lambda: FakeConsumer(log))
    catalog.projection = projection
    await projection.start()
    try:
        log.delivering = False  # the follow loop has not read it yet
        log.append(published("hello", 4))
        started = projection.catch_ups
        getting = asyncio.create_task(catalog.get("hello", 4))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not getting.done()  # waiting for the topic, not refusing
        log.delivering = True
        log.arrived.set()
        assert (await getting).version == 4
        assert projection.catch_ups == started + 1
        with pytest.raises(UnknownDefinition):
            await catalog.get("hello", 9)
        assert projection.catch_ups == started + 2
    finally:
        await projection.stop()


async def test_a_rewind_does_not_wait_for_the_fetch_in_flight(log: FakeLog) -> None:
    """A service's reconcile after a broker loss rewinds its projections last; the seek
    lands when the consumer's long poll returns, and the reconcile does not wait for it."""
    applied = Applied()
    consumer = FakeConsumer(log)
    projection = TopicProjection(TOPIC, applied.apply, lambda: consumer)
    await projection.start()
    poll_returned = asyncio.Event()
    sought = []

    async def seek_after_the_poll(*partitions: TopicPartition) -> bool:
        await poll_returned.wait()
        sought.extend(partitions)
        consumer.position_ = 0
        return True

    consumer.seek_to_beginning = seek_after_the_poll  # type: ignore[method-assign]
    try:
        rewinding = asyncio.create_task(projection.rewind())
        for _ in range(5):  # a few turns of the loop, and the fetch still in flight
            await asyncio.sleep(0)
        assert rewinding.done() and sought == []
        poll_returned.set()
        log.append(published("hello", 4))
        await projection.catch_up()
        assert sought == [TP]
        assert [e.payload.version for e in applied.envelopes] == [1, 2, 3, 1, 2, 3, 4]
    finally:
        await projection.stop()
