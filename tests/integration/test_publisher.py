"""The publisher on the session's real Kafka: what a consumer reads is the envelope, keyed
and headed as the contracts say, whichever path the message took to the producer."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry

from contracts import encode, new_event, parse
from contracts.events.records import RecordChanged
from contracts.topics import Topic
from shared.messaging import Publisher, kafka_producer, make_broker
from shared.metrics import ServiceMetrics
from shared.settings import ServiceSettings
from shared.topics import ensure_topics

pytestmark = pytest.mark.integration


async def test_envelopes_go_out_keyed_and_headed_through_the_connected_producer(
    servers: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    bootstrap: str = servers.kafka_bootstrap
    topic = f"publisher-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [Topic(topic, 2, "publisher test", (), ())])
    monkeypatch.setattr(RecordChanged, "TOPIC", topic)
    settings = ServiceSettings(service_name="publisher-it", kafka_bootstrap=bootstrap)
    metrics = ServiceMetrics(CollectorRegistry(), settings.service_name)
    broker = make_broker(settings)
    publisher = Publisher(broker, metrics)
    envelopes = [new_event(RecordChanged(object_type="Thing", record_id=f"t-{i}",
                                         change="created", new={"i": i}),
                           producer="test", key=f"Thing:t-{i}") for i in range(6)]
    assert kafka_producer(broker) is None  # not connected: FastStream's path
    await broker.connect()
    try:
        # FastStream keeps the aiokafka producer where kafka_producer looks: a FastStream
        # upgrade that moves it fails here rather than quietly taking the slower path.
        assert isinstance(kafka_producer(broker), AIOKafkaProducer)
        await publisher.publish(envelopes)
    finally:
        await broker.stop()

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        records = []
        while len(records) < len(envelopes):
            batch = await consumer.getmany(timeout_ms=5000)
            assert batch, f"only {len(records)} of {len(envelopes)} messages arrived"
            records += [r for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()
    sent = {e.event_id: e for e in envelopes}
    for record in records:
        envelope = parse(record.value)
        original = sent.pop(envelope.event_id)
        assert record.value == encode(original)
        assert record.key == original.partition_key.encode()
        assert dict(record.headers) == {"type": b"RecordChanged",
                                        "schema_version": str(original.schema_version).encode(),
                                        "correlation_id": original.correlation_id.encode()}
    assert not sent
    published = metrics.registry.get_sample_value(
        "baton_messages_published_total", {"service": "publisher-it", "topic": topic})
    assert published == len(envelopes)
