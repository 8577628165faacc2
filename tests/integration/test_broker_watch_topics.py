"""The broker watch tells a lost topic from one created while the services start together."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from shared.broker_watch import BROKER, BrokerWatch
from shared.metrics import ServiceMetrics
from shared.settings import ServiceSettings
from shared.topics import topics_of

pytestmark = pytest.mark.integration


@pytest.fixture
async def db(servers: Any) -> Any:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(servers.mongodb_uri)
    yield client[f"baton_watch_{uuid.uuid4().hex[:8]}"]
    await client.close()


def watch(db: Any, service: str) -> BrokerWatch:
    return BrokerWatch(ServiceSettings(service_name=service), db,
                       ServiceMetrics(CollectorRegistry(), service))


async def test_a_topic_another_service_records_while_this_one_creates_it_is_not_lost(
        db: Any, monkeypatch: Any) -> None:
    """The trigger creates `commands`; meanwhile the coordinator, which found it created,
    records it as seen.  The trigger read what was known before its check: no loss."""
    trigger, coordinator = watch(db, "trigger"), watch(db, "stage-coordinator")

    async def created_while_another_records_it(_: Any) -> list[str]:
        await coordinator.topics_ensured([])  # it saw every topic of its own exist
        return ["commands"]

    monkeypatch.setattr("shared.broker_watch.ensure_service_topics",
                        created_while_another_records_it)
    await trigger.ensure_topics()
    broker = await db.system.find_one({"_id": BROKER})
    assert broker.get("epoch", 0) == 0
    assert "commands" in broker["topics"]


async def test_a_topic_known_before_the_check_and_created_by_it_is_a_loss(
        db: Any, monkeypatch: Any) -> None:
    coordinator = watch(db, "stage-coordinator")
    await coordinator.topics_ensured([])  # every topic of the coordinator seen to exist
    assert "commands" in {t.name for t in topics_of("stage-coordinator")}

    async def had_to_create(_: Any) -> list[str]:
        return ["commands"]

    monkeypatch.setattr("shared.broker_watch.ensure_service_topics", had_to_create)
    await watch(db, "trigger").ensure_topics()
    broker = await db.system.find_one({"_id": BROKER})
    assert broker["epoch"] == 1
    assert broker["recreated"] == ["commands"]
