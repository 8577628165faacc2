"""Offsets are committed after the handler returned, in the background, never past a
batch that failed, and never past where the consumer was sought back to."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry
from pymongo.errors import ConnectionFailure

from contracts import Envelope, encode, headers_of
from contracts.envelope import new_event
from contracts.events.steps import StepCompleted
from shared.messaging import BatchConsumer
from shared.metrics import ServiceMetrics
from shared.settings import ServiceSettings

TP = TopicPartition("steps.outcomes", 0)


class Client:
    """What the consumer uses of aiokafka's: its assignment, seek and commit."""

    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        await self.gate.wait()
        self.commits.append(dict(offsets))


def record(offset: int) -> Any:
    envelope = new_event(StepCompleted(step="s", attempt=1), producer="step-runner", run_id="r1")
    return SimpleNamespace(topic=TP.topic, partition=0, offset=offset, key=b"r1",
                           value=encode(envelope), headers=[(k, v.encode()) for k, v in
                                                            headers_of(envelope).items()])


def consumer_with(handler: Any) -> tuple[BatchConsumer, Client]:
    client = Client()

    async def publish(_: Any) -> None:
        return None

    consumer = BatchConsumer(
        topics=[TP.topic], group_id="g", handler=handler,
        publisher=SimpleNamespace(publish=publish),  # type: ignore[arg-type]
        metrics=ServiceMetrics(CollectorRegistry(), "test"),
        settings=ServiceSettings(handler_attempts=1))
    consumer.subscriber = SimpleNamespace(consumer=client)
    return consumer, client


async def settle(consumer: BatchConsumer) -> None:
    if consumer._committer is not None:
        await consumer._committer


async def test_batches_handled_while_a_commit_is_in_flight_share_the_next_commit() -> None:
    async def handle(_: list[Envelope]) -> None:
        return None

    consumer, client = consumer_with(handle)
    client.gate.clear()  # the first commit hangs until the gate opens
    await consumer.consume([record(0), record(1)])
    await asyncio.sleep(0)
    await consumer.consume([record(2)])
    await consumer.consume([record(3), record(4)])
    client.gate.set()
    await settle(consumer)

    assert client.commits == [{TP: 2}, {TP: 5}]


async def test_a_batch_that_failed_is_sought_back_and_not_committed() -> None:
    async def handle(_: list[Envelope]) -> None:
        raise ConnectionFailure("MongoDB is away")

    consumer, client = consumer_with(handle)
    with pytest.raises(ConnectionFailure):
        await consumer.consume([record(7), record(8)])
    await settle(consumer)

    assert client.seeks == [(TP, 7)]
    assert client.commits == []


async def test_a_batch_in_flight_when_the_consumer_is_sought_back_commits_nothing() -> None:
    release = asyncio.Event()

    async def handle(_: list[Envelope]) -> None:
        await release.wait()

    consumer, client = consumer_with(handle)
    in_flight = asyncio.create_task(consumer.consume([record(10), record(11)]))
    await asyncio.sleep(0)
    consumer.sought({TP: 3})  # e.g. a replay after MongoDB restarted
    release.set()
    await in_flight
    await settle(consumer)

    assert client.commits == []
    assert consumer.watermarks.safe() == {TP: 3}


async def test_batches_after_a_commit_share_the_next_one_which_a_stop_makes_at_once() -> None:
    """One commit per interval while batches keep coming (each is a write for the broker);
    a stop does not wait for the interval (decision 31)."""
    async def handle(_: list[Envelope]) -> None:
        return None

    consumer, client = consumer_with(handle)
    consumer.settings = ServiceSettings(handler_attempts=1, consumer_commit_seconds=3600)
    await consumer.consume([record(0), record(1)])
    for _ in range(5):
        await asyncio.sleep(0)
    assert client.commits == [{TP: 2}]  # the first after a quiet spell: at once
    await consumer.consume([record(2)])
    await consumer.consume([record(3)])
    for _ in range(5):
        await asyncio.sleep(0)
    assert client.commits == [{TP: 2}]  # the next waits for its time
    consumer.hurry()
    await settle(consumer)
    assert client.commits == [{TP: 2}, {TP: 4}]
