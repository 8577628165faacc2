"""The deliveries store on the real MongoDB: first attempts are stored once with their
outcome, retries are leased and their outcomes stored in one guarded bulk write, and the
polls see only what is free and due."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notification.core.model import Delivery
from services.notification.core.retry import on_success
from services.notification.store import DeliveryStore
from shared.mongo import make_client

pytestmark = pytest.mark.integration
LEASE = timedelta(seconds=60)


@pytest.fixture(scope="module")
async def store(servers: Any, database: str) -> AsyncIterator[DeliveryStore]:
    client = make_client(servers.mongodb_uri, app_name="deliveries-it")
    yield DeliveryStore(client[database], LEASE)
    await client.close()


def delivery(now: datetime, **extra: Any) -> Delivery:
    return Delivery(id=uuid.uuid4().hex, source_event_id=uuid.uuid4().hex,
                    source_type="WorkItemAssigned", recipient="ann", channel="email",
                    template="assigned", subject="s", body="b", next_attempt_at=now,
                    created_at=now, **extra)


async def test_first_attempts_are_stored_once_and_a_pending_one_is_due_for_the_sweep(
    store: DeliveryStore,
) -> None:
    now = datetime.now(UTC)
    sent = on_success(delivery(now), now)
    retry = dataclasses.replace(delivery(now), attempts=1, next_attempt_at=now + LEASE)
    assert isinstance(sent, Delivery)
    assert await store.stored_ids([sent.id, retry.id]) == set()

    assert await store.insert_outcomes([sent, retry]) == 2
    assert await store.stored_ids([sent.id, retry.id, "never-planned"]) == {sent.id, retry.id}
    # Another replica (the same event during a rebalance) stores the same ids after: the
    # pending one keeps the first outcome, the finished one is in a second page, and the
    # search shows the first; nothing is raised.
    assert await store.insert_outcomes([dataclasses.replace(sent, status="failed"), retry]) == 1
    assert (await store.deliveries.find_one({"_id": retry.id}))["attempts"] == 1
    assert await store.deliveries.find_one({"_id": sent.id}) is None  # in a page
    listed = await store.search(recipient="ann", status=None, limit=500)
    assert [(d["id"], d["status"]) for d in listed if d["id"] == sent.id] == [(sent.id, "sent")]

    assert retry.id not in await store.due_ids(now, 1000)  # its back-off is not over
    later = now + LEASE + timedelta(seconds=1)
    assert retry.id in await store.due_ids(later, 1000) and sent.id not in await store.due_ids(
        later, 1000)
    taken = await store.claim([retry.id, sent.id], later)
    assert [d.id for d in taken] == [retry.id]
    assert await store.claim([retry.id], later) == []  # leased now: no other replica takes it


async def test_outcomes_are_stored_once_under_the_claimed_attempt(store: DeliveryStore) -> None:
    now = datetime.now(UTC)
    mine, theirs = delivery(now), delivery(now)
    await store.insert_outcomes([mine, theirs])
    assert len(await store.claim([mine.id, theirs.id], now)) == 2
    # Another replica re-claimed `theirs` and recorded an attempt meanwhile.
    stolen = dataclasses.replace(theirs, attempts=1, last_error="timeout")
    await store.deliveries.update_one({"_id": theirs.id}, {"$set": {"attempts": 1}})
    sent = [(d, on_success(d, now)) for d in (mine, theirs)]
    assert await store.record(sent) == 1  # type: ignore[arg-type]
    stored = {d["_id"]: d async for d in store.deliveries.find({"_id": {"$in": [mine.id,
                                                                              stolen.id]}})}
    assert stored[mine.id]["status"] == "sent" and "lease_until" not in stored[mine.id]
    assert stored[theirs.id]["status"] == "pending" and stored[theirs.id]["attempts"] == 1
    assert await store.record([]) == 0
