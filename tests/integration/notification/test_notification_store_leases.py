"""The deliveries store on the real MongoDB: new deliveries are born leased, outcomes are
stored in one guarded bulk write, and the polls see only what is free and due."""

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


async def test_new_deliveries_are_born_leased_and_inserted_once(store: DeliveryStore) -> None:
    now = datetime.now(UTC)
    first, second = delivery(now), delivery(now)
    new = await store.insert_new([first, second, first], now)
    assert {d.id for d in new} == {first.id, second.id}
    assert await store.insert_new([first], now) == []  # a redelivered event: nothing new
    due = await store.due_ids(now, 100)
    assert first.id not in due and second.id not in due  # their inserter holds them
    assert await store.claim([first.id], now) == []  # so does no other replica
    later = now + LEASE + timedelta(seconds=1)
    assert {first.id, second.id} <= set(await store.due_ids(later, 1000))
    taken = await store.claim([first.id], later)
    assert [d.id for d in taken] == [first.id]


async def test_outcomes_are_stored_once_under_the_claimed_attempt(store: DeliveryStore) -> None:
    now = datetime.now(UTC)
    mine, theirs = delivery(now), delivery(now)
    await store.insert_new([mine, theirs], now)
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
