"""Where deliveries are stored: dedupe by delivery id, leases, outcomes, the admin query.

A first attempt is stored once, with its outcome (:meth:`DeliveryStore.insert_outcomes`).
One that ended for good goes into its batch's page of ``delivery_log`` (decision 23, see
:mod:`services.notification.delivery_log`).  A pending one (a retry is due) is a
``deliveries`` document: the :class:`Delivery` fields with ``_id`` = the delivery id, plus
``lease_until`` / ``lease_token`` while the retry sweep of a replica is sending it; only a
retry claims, leases and updates, and only ``deliveries`` documents.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from services.notification import delivery_log
from services.notification.core.model import Delivery, as_fields
from shared.due import Alarm
from shared.mongo import Index, free_lease

DELIVERIES = "deliveries"
DUPLICATE_KEY = 11000
PAGES_READ_AT_ONCE = 20  # the admin search reads pages newest first, in batches of this
INDEXES = [
    Index(DELIVERIES, [("status", ASCENDING), ("next_attempt_at", ASCENDING)]),
    Index(DELIVERIES, [("recipient", ASCENDING), ("created_at", DESCENDING)]),
    Index(DELIVERIES, [("created_at", DESCENDING)]),
    *delivery_log.INDEXES,
]
_FIELDS = {f.name for f in dataclasses.fields(Delivery)}


def to_document(delivery: Delivery) -> dict[str, Any]:
    doc = as_fields(delivery)
    doc["_id"] = doc.pop("id")
    return doc


def from_document(doc: dict[str, Any]) -> Delivery:
    fields = {k: v for k, v in doc.items() if k in _FIELDS}
    return Delivery(id=doc["_id"], **fields)


def claim_query(ids: list[str], now: datetime) -> dict[str, Any]:
    return {"_id": {"$in": ids}, "status": "pending", **free_lease("lease_until", now)}


def due_query(now: datetime) -> dict[str, Any]:
    return {"status": "pending", "next_attempt_at": {"$lte": now},
            **free_lease("lease_until", now)}


def upcoming_query(now: datetime) -> dict[str, Any]:
    """Pending deliveries whose next attempt is still ahead: the earliest is the next wake."""
    return {"status": "pending", "next_attempt_at": {"$gt": now}}


class DeliveryStore:
    def __init__(self, db: AsyncDatabase[dict[str, Any]], lease: timedelta,
                 retries: Alarm | None = None) -> None:
        self.deliveries = db[DELIVERIES]
        self.pages = db[delivery_log.DELIVERY_LOG]
        self.lease = lease
        self.retries = retries or Alarm()  # rung when an outcome stores a retry due sooner

    async def stored_ids(self, ids: Iterable[str]) -> set[str]:
        """Which of these delivery ids are stored already, in a page or in ``deliveries``.

        Two finds, sent together: a ``$unionWith`` would make them one, but the embedded
        server reads the whole other collection for it.
        """
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return set()
        in_pages, pending = await asyncio.gather(
            self.pages.find(delivery_log.stored_query(wanted), {"ids": 1}).to_list(None),
            self.deliveries.find({"_id": {"$in": wanted}}, {"_id": 1}).to_list(None),
        )
        stored = {doc["_id"] for doc in pending}
        stored.update(i for page in in_pages for i in page["ids"])
        return stored & set(wanted)

    async def insert_outcomes(self, deliveries: Sequence[Delivery]) -> int:
        """Store a batch's first attempts with their outcome: one page, one insert.

        Those sent or failed for good go into one ``delivery_log`` page; pending ones
        (with their ``next_attempt_at``; the retry sweep claims them when due, they carry no
        lease) into ``deliveries``, one document each, in one insert.  A pending id stored
        meanwhile (another replica handled the same event during a rebalance) keeps what
        that replica stored; a finished one may then be in two pages (readers keep one).
        Returns how many were stored.
        """
        finished = [d for d in deliveries if d.status != "pending"]
        pending = [d for d in deliveries if d.status == "pending"]
        if finished:
            await self.pages.insert_one(delivery_log.page_document(finished, datetime.now(UTC)))
        inserted = len(finished) + await self._insert_pending(pending)
        self.retries.due(min((d.next_attempt_at for d in pending), default=None))
        return inserted

    async def _insert_pending(self, deliveries: Sequence[Delivery]) -> int:
        if not deliveries:
            return 0
        docs = [to_document(d) for d in deliveries]
        inserted = len(docs)
        try:
            await self.deliveries.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors) or exc.details.get(
                "writeConcernErrors"
            ):
                raise
            inserted -= len(errors)
        return inserted

    async def claim(self, ids: Iterable[str], now: datetime) -> list[Delivery]:
        """Lease the pending ones nobody else holds; returns those this call now owns.

        One update for the whole set and one read back by a fresh token: each document is
        updated atomically, so of two replicas racing for it exactly one gets the token.
        """
        wanted = list(ids)
        if not wanted:
            return []
        token = uuid.uuid4().hex
        await self.deliveries.update_many(
            claim_query(wanted, now),
            {"$set": {"lease_until": now + self.lease, "lease_token": token}},
        )
        cursor = self.deliveries.find({"_id": {"$in": wanted}, "lease_token": token})
        return [from_document(doc) async for doc in cursor]

    async def record(self, outcomes: Sequence[tuple[Delivery, Delivery]]) -> int:
        """Store the outcomes of attempts (claimed, updated) in one bulk write.

        Each is guarded by the attempt count it was claimed at, so an outcome whose claim
        was lost meanwhile (a lease ran out and another replica sent again) changes nothing.
        Returns how many were stored.
        """
        if not outcomes:
            return 0
        ops = []
        for claimed, updated in outcomes:
            doc = to_document(updated)
            doc.pop("_id")
            ops.append(UpdateOne(
                {"_id": claimed.id, "status": "pending", "attempts": claimed.attempts},
                {"$set": doc, "$unset": {"lease_until": "", "lease_token": ""}},
            ))
        result = await self.deliveries.bulk_write(ops, ordered=False)
        retries = [u.next_attempt_at for _, u in outcomes if u.status == "pending"]
        self.retries.due(min(retries, default=None))
        return result.modified_count

    async def due_ids(self, now: datetime, limit: int) -> list[str]:
        cursor = self.deliveries.find(due_query(now), {"_id": 1}).sort("next_attempt_at", 1)
        cursor = cursor.limit(limit)
        return [doc["_id"] async for doc in cursor]

    async def next_attempt_at(self, now: datetime) -> datetime | None:
        cursor = self.deliveries.find(upcoming_query(now), {"next_attempt_at": 1})
        found = await cursor.sort("next_attempt_at", 1).limit(1).to_list(None)
        if not found:
            return None
        at: datetime = found[0]["next_attempt_at"]
        return at if at.tzinfo else at.replace(tzinfo=UTC)

    async def count_pending(self) -> int:
        return await self.deliveries.count_documents({"status": "pending"})

    async def search(
        self, *, recipient: str | None, status: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` deliveries for this recipient and status, each id once:
        the ``deliveries`` documents and the pages' deliveries, merged."""
        query: dict[str, Any] = {}
        if recipient:
            query["recipient"] = recipient
        if status:
            query["status"] = status
        cursor = self.deliveries.find(query, {"lease_token": 0})
        live = [_public(doc) async for doc in cursor.sort("created_at", -1).limit(limit)]
        logged = [] if status == "pending" else await self._logged(recipient, status, limit)
        return delivery_log.newest([*live, *logged], limit)

    async def _logged(self, recipient: str | None, status: str | None,
                      limit: int) -> list[dict[str, Any]]:
        """The pages' newest matching deliveries: pages are read newest first, until the
        rest are older than ``limit`` deliveries found.  An id in two pages is the older
        page's, whatever the status asked."""
        found: dict[str, dict[str, Any]] = {}
        query = delivery_log.search_query(recipient)
        cursor = self.pages.find(query, {"deliveries": 1, "created_at": 1})
        cursor = cursor.sort("created_at", -1).batch_size(PAGES_READ_AT_ONCE)
        async with cursor:
            async for page in cursor:
                matches = delivery_log.with_status(found.values(), status)
                if delivery_log.is_older_than_found(page, matches, limit):
                    break
                found.update((d["id"], d) for d in delivery_log.of_recipient(page, recipient))
        return delivery_log.with_status(found.values(), status)


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    doc["id"] = doc.pop("_id")
    return doc

