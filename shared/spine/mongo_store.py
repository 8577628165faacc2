"""The aggregate store on MongoDB: one collection, one document per aggregate.

A save is one ``bulk_write`` of ``ReplaceOne({_id, revision: read}, doc, upsert=True)``:
one ``update`` command for any mix of new and changed aggregates.  A document whose
revision moved matches nothing, so the upsert tries to insert a second document with its
``_id`` and fails on the unique ``_id``: that write error names the aggregate that lost.

The writers' marks (:mod:`shared.spine.ledger`) live in one document of the ``system``
collection per aggregate collection (``outbox-marks:<collection>``), a field per writer:
a writer raises its own with ``$max``, about once a second.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ReplaceOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from contracts import Envelope
from shared.messaging import Publisher
from shared.metrics import ServiceMetrics
from shared.mongo import Index
from shared.spine.store import Document, Due, Marks, StoreBase

log = logging.getLogger("baton.spine")
DUPLICATE_KEY = 11000
SYSTEM = "system"  # where the writers' marks live: one document per aggregate collection
OUTBOX_FIELDS = {"outbox": 1, "outbox_at": 1, "outbox_by": 1, "revision": 1}


def spine_indexes(collection: str) -> list[Index]:
    """The indexes the spine's own queries need: the timers due, the outboxes a writer
    stamped beyond its mark (the sweep; sparse: only documents with an outbox)."""
    return [Index(collection, [("next_timer_at", 1)], options={"sparse": True}),
            Index(collection, [("outbox_by", 1), ("outbox_at", 1)], options={"sparse": True})]


def due_query(until: datetime) -> dict[str, Any]:
    """Aggregates with a timer due by ``until``: one clause, so the sparse index serves it
    (with another clause the embedded MongoDB may plan on that one and scan)."""
    return {"next_timer_at": {"$lte": until}}


def stamped_query(writer: str, after: datetime, until: datetime) -> dict[str, Any]:
    """The outboxes ``writer`` stamped in (after, until]: the ``(outbox_by, outbox_at)`` index."""
    return {"outbox_by": writer, "outbox_at": {"$gt": after, "$lte": until}}


class MongoAggregateStore(StoreBase):
    def __init__(
        self,
        collection: AsyncCollection[Document],
        publisher: Publisher,
        metrics: ServiceMetrics,
        *,
        system: AsyncCollection[Document],
        mark_delay: float = 1.0,
    ) -> None:
        super().__init__(mark_delay=mark_delay)
        self.collection = collection
        self.system = system  # the service's ``system`` collection: the marks live there
        self.marks_id = f"outbox-marks:{collection.name}"
        self.publisher = publisher
        self.metrics = metrics
        self._legacy_done = True  # until the marks document says otherwise

    async def _find(self, query: Mapping[str, Any]) -> list[Document]:
        return await self.collection.find(dict(query)).to_list(None)

    async def _write(self, docs: Sequence[tuple[int, Document]]) -> set[str]:
        ops = [ReplaceOne({"_id": doc["_id"], "revision": revision or None}, doc, upsert=True)
               for revision, doc in docs]
        try:
            result = await self.collection.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            others = [e for e in errors if e.get("code") != DUPLICATE_KEY]
            if others:
                raise
            return {docs[e["index"]][1]["_id"] for e in errors}
        if result.matched_count + result.upserted_count == len(docs):
            return set()
        return await self._not_written(docs)  # a server that reports no write error

    async def _not_written(self, docs: Sequence[tuple[int, Document]]) -> set[str]:
        keys = [doc["_id"] for _, doc in docs]
        stored = await self.collection.find({"_id": {"$in": keys}}, {"revision": 1}).to_list(None)
        revisions = {d["_id"]: d.get("revision") for d in stored}
        return {doc["_id"] for _, doc in docs if revisions.get(doc["_id"]) != doc["revision"]}

    async def _send(self, envelopes: Sequence[Envelope]) -> None:
        await self.publisher.publish(envelopes)

    async def _read_marks(self) -> Marks:
        doc = await self.system.find_one({"_id": self.marks_id}) or {}
        self._legacy_done = bool(doc.get("legacy_swept"))
        return dict(doc.get("writers") or {})

    async def _write_mark(self, writer: str, through: datetime, at: datetime | None) -> None:
        update: dict[str, Any] = {"$max": {f"writers.{writer}.through": through}}
        if at is not None:
            update["$set"] = {f"writers.{writer}.at": at}
        await self.system.update_one({"_id": self.marks_id}, update, upsert=True)

    async def _retire(self, writer: str, at: datetime | None) -> None:
        await self.system.update_one({"_id": self.marks_id, f"writers.{writer}.at": at},
                                     {"$unset": {f"writers.{writer}": ""}})

    async def _stamped(self, writer: str, after: datetime, until: datetime) -> list[Document]:
        return await self.collection.find(stamped_query(writer, after, until),
                                          OUTBOX_FIELDS).to_list(None)

    async def _stamped_at(self, writer: str, stamps: Sequence[datetime]) -> list[Document]:
        query = {"outbox_by": writer, "outbox_at": {"$in": list(stamps)}}
        return await self.collection.find(query, OUTBOX_FIELDS).to_list(None)

    async def due(self, until: datetime, limit: int) -> list[Due]:
        """Aggregates with a timer due by ``until``, soonest first (the sparse index)."""
        docs = await self.collection.find(
            due_query(until), {"next_timer_at": 1, "timers": 1}
        ).sort("next_timer_at", 1).limit(limit).to_list(None)
        return [(d["_id"], d["next_timer_at"], tuple(d.get("timers") or ())) for d in docs]

    async def claim(self, due: Sequence[Due], until: datetime) -> list[str]:
        """Lease the timers of these aggregates to this caller until ``until``: one write.

        The claim moves ``next_timer_at`` on (so no other replica sees the timers due while
        this one fires them, and a fire that fails is tried again when the lease ends) and
        matches only a ``next_timer_at`` still as read.  When every claim matched, all are
        ours; otherwise one read tells which (by the lease's token).
        """
        if not due:
            return []
        token = uuid.uuid4().hex
        result = await self.collection.bulk_write(
            [UpdateOne({"_id": key, "next_timer_at": at},
                       {"$set": {"next_timer_at": until, "timer_lease": token}})
             for key, at, _ in due],
            ordered=False,
        )
        if result.matched_count == len(due):
            return [key for key, _, _ in due]
        stored = await self.collection.find(
            {"_id": {"$in": [key for key, _, _ in due]}}, {"timer_lease": 1}).to_list(None)
        ours = {d["_id"] for d in stored if d.get("timer_lease") == token}
        return [key for key, _, _ in due if key in ours]

    async def sweep(self, older_than: timedelta = timedelta(seconds=5)) -> int:
        """Publish what a crash left behind (see :meth:`StoreBase.sweep`), and once per
        collection what was stored before writers marked their outboxes."""
        swept = await super().sweep(older_than)
        if not self._legacy_done:
            swept += await self._sweep_unmarked(datetime.now(UTC) - older_than)
        pending = len(self.ledger.in_flight) + len(self.ledger.in_doubt)
        self.metrics.outbox_backlog.labels(self.metrics.service).set(swept + pending)
        return swept

    async def _sweep_unmarked(self, cutoff: datetime) -> int:
        """Outboxes written before marks (no ``outbox_by``): published, then cleared as
        before.  One scan per collection, ever: the marks document remembers it."""
        docs = await self.collection.find(
            {"outbox_at": {"$lte": cutoff}, "outbox_by": {"$exists": False}}, OUTBOX_FIELDS
        ).to_list(None)
        await self.publish_outboxes(docs)
        if docs:
            await self.collection.bulk_write(
                [UpdateOne({"_id": d["_id"], "revision": d["revision"]},
                           {"$set": {"outbox": []}, "$unset": {"outbox_at": ""}}) for d in docs],
                ordered=False)
        await self.system.update_one({"_id": self.marks_id}, {"$set": {"legacy_swept": True}},
                                     upsert=True)
        self._legacy_done = True
        return len(docs)
