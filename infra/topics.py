"""Create Baton's topics explicitly (never rely on auto-creation)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError

from contracts.topics import TOPICS, Topic


async def ensure_topics(
    bootstrap: str, topics: Iterable[Topic] = TOPICS, *, partitions: int | None = None
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
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
        wanted = [
            NewTopic(t.name, partitions if partitions and t.partitions > 1 else t.partitions, 1)
            for t in topics
            if t.name not in existing
        ]
        if wanted:
            await admin.create_topics(wanted)
        return [t.name for t in wanted]
    finally:
        await admin.close()
