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


async def test_services_on_stores_of_their_own_share_the_broker_epoch(
        servers: Any, monkeypatch: Any) -> None:
    """Decision 25: the coordinator keeps its data apart, the epoch stays on the shared store;
    a loss that the trigger notices makes the coordinator reconcile too."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(servers.mongodb_uri)
    name = uuid.uuid4().hex[:8]
    shared, own = client[f"baton_shared_{name}"], client[f"baton_own_{name}"]
    try:
        trigger = watch(shared, "trigger")
        coordinator = BrokerWatch(ServiceSettings(service_name="stage-coordinator"), own,
                                  ServiceMetrics(CollectorRegistry(), "stage-coordinator"),
                                  shared=shared)
        reconciled: list[str] = []

        async def reconcile() -> None:
            reconciled.append("stage-coordinator")
        coordinator.hooks.append(reconcile)

        async def all_there(_: Any) -> list[str]:
            return []
        monkeypatch.setattr("shared.broker_watch.ensure_service_topics", all_there)
        await trigger.topics_ensured([])
        await trigger.topics_ensured(["commands"])  # seen before, created again: lost

        assert await coordinator() is True
        assert reconciled == ["stage-coordinator"]
        broker = await shared.system.find_one({"_id": BROKER})
        assert broker["epoch"] == 1 and broker["reconciled"]["stage-coordinator"] == 1
        assert await own.system.find_one({"_id": BROKER}) is None
    finally:
        await client.drop_database(shared.name)
        await client.drop_database(own.name)
        await client.close()
