"""A topic handed from one consumer group to another (shared/handover.py, decision 20), on
the session's real Kafka: the new group starts each partition where the old group had
committed, keeps its own position where it has one, and commits what it took over at once.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from e2e.conftest import wait_for
from prometheus_client import CollectorRegistry

from contracts import Envelope, encode, new_event
from contracts.events.records import RecordChanged
from contracts.topics import Topic
from shared.messaging import BatchConsumer, Publisher, make_broker
from shared.metrics import ServiceMetrics
from shared.settings import ServiceSettings
from shared.topics import ensure_topics

pytestmark = pytest.mark.integration
PER_PARTITION = 10


async def commit(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    """What a group had committed before (no member: a commit from outside is taken)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    consumer.assign(list(offsets))
    await consumer.start()
    try:
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
    finally:
        await consumer.stop()


async def committed(bootstrap: str, group: str, tps: list[TopicPartition]) -> dict[Any, Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    consumer.assign(tps)
    await consumer.start()
    try:
        return {tp: await consumer.committed(tp) for tp in tps}
    finally:
        await consumer.stop()


async def test_the_new_group_starts_where_the_old_one_had_got_to(servers: Any) -> None:
    bootstrap: str = servers.kafka_bootstrap
    topic = f"handover-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [Topic(topic, 3, "handover test", (), ())])
    p0, p1, p2 = (TopicPartition(topic, p) for p in range(3))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for tp in (p0, p1, p2):
            for i in range(PER_PARTITION):
                change = new_event(RecordChanged(object_type="Thing", record_id=f"{tp}-{i}",
                                                 change="created", new={"i": i}),
                                   producer="test", key=f"Thing:{i}")
                await producer.send_and_wait(topic, encode(change), partition=tp.partition)
    finally:
        await producer.stop()
    old, new = f"old-{uuid.uuid4().hex[:8]}", f"new-{uuid.uuid4().hex[:8]}"
    await commit(bootstrap, old, {p0: 4, p1: 7})  # p2: the old group never committed
    await commit(bootstrap, new, {p1: 9})  # the new group's own position wins

    settings = ServiceSettings(service_name="handover-test", kafka_bootstrap=bootstrap)
    metrics = ServiceMetrics(CollectorRegistry(), settings.service_name)
    broker = make_broker(settings)
    handled: list[Envelope] = []

    async def handler(envelopes: list[Envelope]) -> None:
        handled.extend(envelopes)

    consumer = BatchConsumer(topics=(topic,), group_id=new, handler=handler,
                             publisher=Publisher(broker, metrics), metrics=metrics,
                             settings=settings, takes_over={topic: old})
    consumer.register(broker)
    assert consumer.handover is not None
    lookup = consumer.handover.old_offsets

    async def slow_lookup(group: str, partitions: list[TopicPartition]) -> Any:
        await asyncio.sleep(2)  # the fetcher runs meanwhile: the partitions must wait
        return await lookup(group, partitions)

    consumer.handover.old_offsets = slow_lookup
    await broker.start()
    try:
        async def caught_up() -> bool:
            lag = await consumer.lag()
            return len(handled) >= 17 and lag[topic] == 0

        await wait_for(caught_up, timeout=60)
    finally:
        await broker.stop()

    # p0 from the old group's 4, p1 from the new group's own 9, p2 from the beginning
    taken = sorted(e.payload.record_id for e in handled)  # type: ignore[attr-defined]
    assert taken == sorted([f"{p0}-{i}" for i in range(4, 10)] + [f"{p1}-9"]
                           + [f"{p2}-{i}" for i in range(10)])
    assert consumer.handover.handed_over == {p0: 4}
    assert await committed(bootstrap, new, [p0, p1, p2]) == {p0: 10, p1: 10, p2: 10}
