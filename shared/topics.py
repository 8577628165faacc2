"""Create Baton's topics explicitly (never rely on auto-creation), or check that they exist.

Each service ensures the topics it writes or reads (``contracts.topics.used_by``): on a
cluster with ACLs it may describe no others.  Where topics are managed outside Baton,
``BATON_KAFKA_CREATE_TOPICS=false`` turns creation off, and a missing topic is a start-up
error that names it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError

from contracts.topics import SERVICES, TOPICS, Topic, used_by
from shared.kafka_connection import client_options
from shared.settings import ServiceSettings

TOPIC_ALREADY_EXISTS = 36


class TopicsMissing(RuntimeError):
    """Topic creation is off and the cluster lacks topics this service needs."""


class TopicsNotCreated(RuntimeError):
    """The cluster refused to create a topic; the message carries its reason."""


@dataclass(frozen=True)
class TopicPolicy:
    create: bool = True
    replication_factor: int = 1
    min_insync_replicas: int | None = None
    partitions: int | None = None  # overrides every multi-partition topic's count (bench)

    @classmethod
    def of(cls, settings: ServiceSettings) -> TopicPolicy:
        return cls(settings.kafka_create_topics, settings.kafka_replication_factor,
                   settings.kafka_min_insync_replicas)

    def new_topic(self, topic: Topic) -> NewTopic:
        partitions = self.partitions if self.partitions and topic.partitions > 1 else None
        configs = ({"min.insync.replicas": str(self.min_insync_replicas)}
                   if self.min_insync_replicas else {})
        if topic.compacted:
            configs["cleanup.policy"] = "compact"
        return NewTopic(topic.name, partitions or topic.partitions, self.replication_factor,
                        topic_configs=configs)


def topics_of(service: str) -> tuple[Topic, ...]:
    return used_by(service) if service in SERVICES else TOPICS


async def ensure_service_topics(settings: ServiceSettings) -> list[str]:
    return await ensure_topics(client_options(settings), topics_of(settings.service_name),
                               TopicPolicy.of(settings))


async def ensure_topics(
    options: dict[str, Any] | str,
    topics: Iterable[Topic] = TOPICS,
    policy: TopicPolicy = TopicPolicy(),
) -> list[str]:
    """Create the topics that do not exist yet (or, with creation off, insist that they
    do); returns the names created.  ``options`` is aiokafka's client options or a
    bootstrap address."""
    if isinstance(options, str):
        options = {"bootstrap_servers": options}
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=10000)
    for attempt in range(30):
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            if attempt == 29:
                raise
            await asyncio.sleep(0.5)
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t.name not in existing]
        if missing and not policy.create:
            names = ", ".join(t.name for t in missing)
            raise TopicsMissing(
                f"the Kafka cluster has no topic {names} (or this principal may not describe "
                "it), and topic creation is off (BATON_KAFKA_CREATE_TOPICS=false): create "
                "them, for example with `python -m infra.kafka_acls --create-topics`, and "
                "grant this service its ACLs"
            )
        if not missing:
            return []
        response = await admin.create_topics([policy.new_topic(t) for t in missing])
        results = [(e["topic"], e["error_code"], e.get("error_message"))
                   for e in response.to_object()["topic_errors"]]
        refused = [r for r in results if r[1] not in (0, TOPIC_ALREADY_EXISTS)]
        if refused:
            reasons = "; ".join(f"{name}: error {code} {message or ''}".strip()
                                for name, code, message in refused)
            raise TopicsNotCreated(f"Kafka refused to create topics: {reasons}")
        # A topic another service created meanwhile already exists: not created here.
        return [name for name, code, _ in results if code == 0]
    finally:
        await admin.close()
