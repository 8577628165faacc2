"""The aggregate store on MongoDB: one collection, one document per aggregate.

A save is one ``bulk_write``: ``InsertOne(doc)`` for a new aggregate and, for a changed
one, a replacement by ``_id`` that takes place only while the document holds the revision
read (:func:`shared.mongo.replace_at`; one ``insert`` and one ``update`` command when a
save holds both).  An insert of an aggregate another writer created first fails on the
unique ``_id``, and a replacement of a document whose revision moved fails too (the
``LOST_RACE`` write error): each error names the aggregate that lost.  The filter is the
``_id`` alone, and new aggregates are inserted, not upserted, because the embedded
MongoDB plans any other filter, and an upsert's query, over every index of the collection
first (decision 31).

The outbox is one packed value of the messages as the producer sends them (encoded when
they were decided, :mod:`shared.outgoing`, decision 35), and the fields of the service's
``packing`` (those no query of its collection names) go into one packed value: the store
opens what it reads (:class:`shared.packed.Packing`, decisions 27 and 32).

The timers' index (:func:`timers_index`) is created by the first save of a document with a
timer, not at start-up, and :meth:`MongoAggregateStore.due` reads only once it exists:
most collections never hold a timer, and every index costs every write (decision 36).

The writers' marks live in the ``system`` collection (:mod:`shared.spine.mongo_marks`);
a stamped document carries its stamp's key in the collection's multikey ``key_field``,
which the sweep seeks (:mod:`shared.spine.stamp_keys`, decision 37).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo import InsertOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from shared.messaging import Publisher
from shared.metrics import ServiceMetrics
from shared.mongo import LOST_RACE, Index, IndexOnDemand, replace_at
from shared.outgoing import Outgoing
from shared.packed import Packing
from shared.spine.marks import Document
from shared.spine.mongo_marks import SYSTEM, MongoMarks, key_old_stamps, stamped_query
from shared.spine.store import Due, StoreBase

__all__ = ["SYSTEM", "MongoAggregateStore", "due_query", "spine_indexes", "stamped_query",
           "timers_index"]
DUPLICATE_KEY = 11000


def spine_indexes(collection: str) -> list[Index]:
    """The indexes the spine's own queries need from the start: none.  The sweep seeks the
    stamps' keys in the service's key field, which the service indexes (decision 37), and
    the timers' index comes with the first timer (:func:`timers_index`, decision 36)."""
    return []


def timers_index(collection: str) -> Index:
    """The timers due, soonest first: created by the first save of a timer, not at start-up
    (:class:`shared.mongo.IndexOnDemand`, decision 36), as most collections never hold one."""
    return Index(collection, [("next_timer_at", 1)], options={"sparse": True})


def due_query(until: datetime) -> dict[str, Any]:
    """Aggregates with a timer due by ``until``: one clause, so the sparse index serves it
    (with another clause the embedded MongoDB may plan on that one and scan)."""
    return {"next_timer_at": {"$lte": until}}


class MongoAggregateStore(StoreBase):
    def __init__(
        self,
        collection: AsyncCollection[Document],
        publisher: Publisher,
        metrics: ServiceMetrics,
        *,
        system: AsyncCollection[Document],
        key_field: str,
        mark_delay: float = 1.0,
        packing: Packing = Packing(),
    ) -> None:
        super().__init__(MongoMarks(collection, system, key_field), key_field=key_field,
                         mark_delay=mark_delay,
                         backlog=metrics.outbox_backlog.labels(metrics.service))
        self.collection = collection
        self.system = system
        self.stamp_keys_field = key_field
        self.publisher = publisher
        self.metrics = metrics
        self.packing = packing
        self.timers_index = IndexOnDemand(collection, timers_index(collection.name))

    async def key_old_stamps(self) -> int | None:
        """At start-up: key what an older version stamped beyond the marks, then drop its
        outbox index (:func:`~shared.spine.mongo_marks.key_old_stamps`)."""
        return await key_old_stamps(self.collection, self.system, self.stamp_keys_field)

    async def _find(self, query: Mapping[str, Any]) -> list[Document]:
        docs = await self.collection.find(dict(query)).to_list(None)
        return [self.packing.open(doc) for doc in docs]

    async def _write(self, docs: Sequence[tuple[int, Document]]) -> set[str]:
        # The packing's fields are kept packed (shared/packed.py), as the outbox is
        # (document_of): MongoDB never looks inside them.
        if not self.timers_index.known and any("next_timer_at" in doc for _, doc in docs):
            await self.timers_index.ensure()  # before the first document it indexes
        stored = [(revision, self.packing.pack(doc)) for revision, doc in docs]
        ops = [replace_at(doc, revision) if revision else InsertOne(doc)
               for revision, doc in stored]
        replacing = sum(1 for revision, _ in stored if revision)
        try:
            result = await self.collection.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") not in (DUPLICATE_KEY, LOST_RACE) for e in errors):
                raise
            lost = {docs[e["index"]][1]["_id"] for e in errors}
            raced = sum(1 for e in errors if e.get("code") == LOST_RACE)
            if exc.details.get("nModified", 0) + raced == replacing:
                return lost
            return lost | await self._not_written(docs)  # and a document that is gone
        if result.modified_count == replacing:
            return set()
        return await self._not_written(docs)  # a document that is gone

    async def _not_written(self, docs: Sequence[tuple[int, Document]]) -> set[str]:
        keys = [doc["_id"] for _, doc in docs]
        stored = await self.collection.find({"_id": {"$in": keys}}, {"revision": 1}).to_list(None)
        revisions = {d["_id"]: d.get("revision") for d in stored}
        return {doc["_id"] for _, doc in docs if revisions.get(doc["_id"]) != doc["revision"]}

    async def _send(self, messages: Sequence[Outgoing]) -> None:
        await self.publisher.send(messages)

    async def due(self, until: datetime, limit: int) -> list[Due]:
        """Aggregates with a timer due by ``until``, soonest first (the sparse index; none
        while it does not exist, as no aggregate has had a timer then)."""
        if not await self.timers_index.exists():
            return []
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
