"""The batch consumer's fetch wait on the session's real Kafka API server (decision 41).

While records come, the client's fetches may be held by the broker only briefly; once a
look found nothing, they may be held long again.  Checked on the aiokafka consumer that
FastStream's subscriber runs, as it builds its fetches.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from e2e.conftest import wait_for
from prometheus_client import CollectorRegistry

from contracts import Envelope, encode, new_event
from contracts.events.records import RecordChanged
from contracts.topics import Topic
from shared.messaging import FETCH_WAIT_ATTRIBUTE, BatchConsumer, Publisher, make_broker
from shared.metrics import ServiceMetrics
from shared.settings import ServiceSettings
from shared.topics import ensure_topics

pytestmark = pytest.mark.integration
BUSY_MS, IDLE_MS = 40, 900


async def test_fetches_wait_briefly_while_records_come_and_long_when_none_do(servers: Any
                                                                             ) -> None:
    bootstrap: str = servers.kafka_bootstrap
    topic = f"fetch-pace-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [Topic(topic, 1, "fetch pace test", (), ())])
    settings = ServiceSettings(service_name="pace-test", kafka_bootstrap=bootstrap,
                               consumer_batch_timeout_ms=300, consumer_max_records=5,
                               consumer_fetch_max_wait_ms=IDLE_MS,
                               consumer_busy_fetch_max_wait_ms=BUSY_MS)
    metrics = ServiceMetrics(CollectorRegistry(), settings.service_name)
    broker = make_broker(settings)
    waits_in_handler: list[int] = []
    handled: list[Envelope] = []

    def fetch_wait() -> int:
        return int(getattr(consumer.client._fetcher, FETCH_WAIT_ATTRIBUTE))

    async def handler(envelopes: list[Envelope]) -> None:
        waits_in_handler.append(fetch_wait())  # the poll that handed these over set it
        handled.extend(envelopes)

    consumer = BatchConsumer(topics=(topic,), group_id=f"pace-{uuid.uuid4().hex[:8]}",
                             handler=handler, publisher=Publisher(broker, metrics),
                             metrics=metrics, settings=settings)
    consumer.register(broker)
    await broker.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        async def started_idle() -> bool:
            return consumer.client is not None and fetch_wait() == IDLE_MS

        await wait_for(started_idle, timeout=30)  # an empty look: long fetches
        for i in range(12):
            change = new_event(RecordChanged(object_type="Thing", record_id=f"t-{i}",
                                             change="created", new={"i": i}),
                               producer="test", key=f"Thing:t-{i}")
            await producer.send(topic, encode(change), key=b"k")
        await producer.flush()

        async def all_handled() -> bool:
            return len(handled) == 12

        await wait_for(all_handled, timeout=30)
        assert waits_in_handler and set(waits_in_handler) == {BUSY_MS}

        async def idle_again() -> bool:
            return fetch_wait() == IDLE_MS

        await wait_for(idle_again, timeout=30)
    finally:
        await producer.stop()
        await broker.stop()
