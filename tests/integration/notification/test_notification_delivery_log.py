"""A batch's finished first attempts as one ``delivery_log`` page, on the real MongoDB
(decision 23): one write per batch, the dedupe across pages and ``deliveries``, and the
admins' search merging both, newest first, each id once."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from plans import first_index_scan

from services.notification import delivery_log
from services.notification.core.model import Delivery
from services.notification.core.retry import on_success
from services.notification.store import INDEXES, DeliveryStore
from shared.mongo import ensure_indexes, make_client

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
async def db(servers: Any, database: str) -> AsyncIterator[Any]:
    client = make_client(servers.mongodb_uri, app_name="delivery-log-it")
    await ensure_indexes(client[database], INDEXES)
    yield client[database]
    await client.close()


@pytest.fixture
def store(db: Any) -> DeliveryStore:
    return DeliveryStore(db, timedelta(seconds=60))


def planned(recipient: str, age_seconds: int = 0) -> Delivery:
    at = NOW - timedelta(seconds=age_seconds)
    return Delivery(id=uuid.uuid4().hex, source_event_id=uuid.uuid4().hex,
                    source_type="WorkItemAssigned", recipient=recipient, channel="email",
                    template="assigned", subject="s", body="b", next_attempt_at=at,
                    created_at=at)


def sent(recipient: str, age_seconds: int = 0) -> Delivery:
    done = on_success(planned(recipient, age_seconds), NOW)
    assert isinstance(done, Delivery)
    return done


def failed(recipient: str, age_seconds: int = 0) -> Delivery:
    return dataclasses.replace(planned(recipient, age_seconds), status="failed", attempts=1,
                               last_error="address refused")


def pending(recipient: str, age_seconds: int = 0) -> Delivery:
    return dataclasses.replace(planned(recipient, age_seconds), attempts=1,
                               next_attempt_at=NOW + timedelta(minutes=5))


def person() -> str:
    return f"p-{uuid.uuid4().hex[:8]}"


async def test_a_batch_writes_one_page_and_its_pending_ones_apart(store: DeliveryStore) -> None:
    ann, bob = person(), person()
    batch = [sent(ann), sent(bob), failed(bob), pending(ann)]

    assert await store.insert_outcomes(batch) == 4

    pages = await store.pages.find({"ids": {"$in": [d.id for d in batch]}}).to_list(None)
    assert len(pages) == 1
    page = pages[0]
    assert page["ids"] == [d.id for d in batch[:3]] and page["recipients"] == sorted([ann, bob])
    assert [d["status"] for d in page["deliveries"]] == ["sent", "sent", "failed"]
    assert page["deliveries"][0] == dataclasses.asdict(batch[0])  # as a document holds it
    in_deliveries = await store.deliveries.find({"_id": {"$in": [d.id for d in batch]}}).to_list(
        None)
    assert [doc["_id"] for doc in in_deliveries] == [batch[3].id]
    assert await store.count_pending() >= 1


async def test_an_id_is_stored_once_in_a_page_or_in_deliveries(store: DeliveryStore) -> None:
    ann = person()
    logged, waiting, unknown = sent(ann), pending(ann), planned(ann)
    assert await store.stored_ids([logged.id, waiting.id, unknown.id]) == set()

    await store.insert_outcomes([logged, waiting])

    assert await store.stored_ids([logged.id, waiting.id, unknown.id, logged.id]) == {
        logged.id, waiting.id}
    assert await store.stored_ids([]) == set()
    assert await store.insert_outcomes([]) == 0


async def test_the_search_merges_pages_and_deliveries_newest_first(store: DeliveryStore) -> None:
    ann, bob = person(), person()
    oldest, old_pending, newer, bobs, newest = (
        sent(ann, 50), pending(ann, 40), failed(ann, 30), sent(bob, 20), sent(ann, 10))
    await store.insert_outcomes([oldest, old_pending])
    await store.insert_outcomes([newer, bobs])
    await store.insert_outcomes([newest])

    def ids(found: list[dict[str, Any]]) -> list[str]:
        return [d["id"] for d in found]

    assert ids(await store.search(recipient=ann, status=None, limit=10)) == [
        newest.id, newer.id, old_pending.id, oldest.id]
    assert ids(await store.search(recipient=ann, status=None, limit=2)) == [newest.id, newer.id]
    assert ids(await store.search(recipient=ann, status="sent", limit=10)) == [
        newest.id, oldest.id]
    assert ids(await store.search(recipient=ann, status="pending", limit=10)) == [old_pending.id]
    assert ids(await store.search(recipient=bob, status=None, limit=10)) == [bobs.id]
    everyone = ids(await store.search(recipient=None, status=None, limit=500))
    assert everyone.index(newest.id) < everyone.index(bobs.id) < everyone.index(oldest.id)
    listed = (await store.search(recipient=bob, status=None, limit=1))[0]
    assert listed["status"] == "sent" and listed["attempts"] == 1 and listed["channel"] == "email"
    assert "lease_token" not in listed


async def test_the_search_reads_past_pages_without_a_match(store: DeliveryStore) -> None:
    """The newest pages hold only sent mails: the failed one is in an older page."""
    ann = person()
    refused = failed(ann, 200)
    await store.insert_outcomes([refused])
    mails = [sent(ann, age) for age in range(100, 25, -3)]  # more pages than one read brings
    for mail in mails:
        await store.insert_outcomes([mail])

    found = await store.search(recipient=ann, status="failed", limit=5)

    assert [d["id"] for d in found] == [refused.id]
    newest_sent = await store.search(recipient=ann, status="sent", limit=5)
    assert [d["id"] for d in newest_sent] == [m.id for m in reversed(mails[-5:])]


async def test_an_id_in_two_pages_is_listed_once_with_the_first_outcome(
    store: DeliveryStore,
) -> None:
    """Two replicas handled the same event during a rebalance (decision 15)."""
    ann = person()
    first = sent(ann)
    await store.insert_outcomes([first])
    await store.insert_outcomes([dataclasses.replace(first, status="failed", last_error="x")])

    assert len(await store.pages.find({"ids": first.id}).to_list(None)) == 2
    found = await store.search(recipient=ann, status=None, limit=10)
    assert [(d["id"], d["status"]) for d in found] == [(first.id, "sent")]
    assert await store.search(recipient=ann, status="failed", limit=10) == []
    assert await store.stored_ids([first.id]) == {first.id}


@pytest.mark.parametrize(("query", "index"), [
    (delivery_log.stored_query(["d1", "d2"]), "ids_1"),
    (delivery_log.search_query("ann"), "recipients_1_created_at_-1"),
])
async def test_the_page_queries_are_behind_an_index(
    db: Any, query: dict[str, Any], index: str
) -> None:
    """The embedded server looks a multikey ``$in`` up value by value (decision 19)."""
    scanned, plan = await first_index_scan(db, delivery_log.DELIVERY_LOG, query)
    assert scanned == index, plan
