"""Consumer lag as the batch consumer reports it, on the session's real Kafka API server.

A consumer fetching one record at a time is held inside its handler while 30 messages wait
on its own topic: it is 29 behind; released, it catches up to 0.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
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
MESSAGES = 30


async def test_lag_is_what_the_consumer_has_not_taken_yet(servers: Any) -> None:
    bootstrap: str = servers.kafka_bootstrap
    topic = f"obs-lag-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [Topic(topic, 1, "consumer lag test", (), ())])
    settings = ServiceSettings(service_name="lag-test", kafka_bootstrap=bootstrap,
                               consumer_max_records=1)
    metrics = ServiceMetrics(CollectorRegistry(), settings.service_name)
    broker = make_broker(settings)
    release = asyncio.Event()
    handled: list[Envelope] = []

    async def handler(envelopes: list[Envelope]) -> None:
        handled.extend(envelopes)
        await release.wait()

    consumer = BatchConsumer(topics=(topic,), group_id=f"lag-{uuid.uuid4().hex[:8]}",
                             handler=handler, publisher=Publisher(broker, metrics),
                             metrics=metrics, settings=settings)
    consumer.register(broker)
    assert await consumer.lag() == {topic: 0}  # not started: nothing known

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(MESSAGES):
            change = new_event(RecordChanged(object_type="Thing", record_id=f"t-{i}",
                                             change="created", new={"i": i}),
                               producer="test", key=f"Thing:t-{i}")
            await producer.send_and_wait(topic, encode(change), key=b"k")
    finally:
        await producer.stop()

    await broker.start()
    try:
        async def behind_by_all_but_the_one_in_hand() -> bool:
            return bool(handled) and (await consumer.lag())[topic] == MESSAGES - 1

        await wait_for(behind_by_all_but_the_one_in_hand, timeout=30)
        release.set()

        async def caught_up() -> bool:
            return len(handled) == MESSAGES and (await consumer.lag())[topic] == 0

        await wait_for(caught_up, timeout=30)
    finally:
        release.set()
        await broker.stop()
