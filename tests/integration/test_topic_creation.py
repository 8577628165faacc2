"""Topic creation on the real broker: idempotent, optional, and clear when it cannot be done."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from contracts.topics import Topic
from shared.topics import TopicPolicy, TopicsMissing, TopicsNotCreated, ensure_topics

pytestmark = pytest.mark.integration


def fresh_topic() -> Topic:
    return Topic(f"test.topics.{uuid.uuid4().hex[:8]}", 2, "topic creation test", (), ())


async def test_creating_twice_creates_once(servers: Any) -> None:
    topic = fresh_topic()
    assert await ensure_topics(servers.kafka_bootstrap, [topic]) == [topic.name]
    assert await ensure_topics(servers.kafka_bootstrap, [topic]) == []


async def test_with_creation_off_a_missing_topic_is_named(servers: Any) -> None:
    topic = fresh_topic()
    with pytest.raises(TopicsMissing, match=topic.name.replace(".", r"\.")):
        await ensure_topics(servers.kafka_bootstrap, [topic], TopicPolicy(create=False))
    await ensure_topics(servers.kafka_bootstrap, [topic])
    assert await ensure_topics(servers.kafka_bootstrap, [topic], TopicPolicy(create=False)) == []


async def test_a_replication_the_cluster_cannot_give_is_refused_with_the_reason(
    servers: Any,
) -> None:
    topic = fresh_topic()
    with pytest.raises(TopicsNotCreated, match=rf"{topic.name}: error 38"):
        await ensure_topics(servers.kafka_bootstrap, [topic], TopicPolicy(replication_factor=3))
