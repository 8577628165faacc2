"""The writers' marks on MongoDB, for any collection whose documents carry their outbox.

The marks live in one document of the ``system`` collection per collection
(``outbox-marks:<collection>``), a field per writer, each raised with ``$max`` about once a
second.  What a writer stamped is found through the sparse ``(outbox_by, outbox_at)``
index (:func:`outbox_index`).  Used by the spine's MongoDB store and the coordinator's
run store (:mod:`shared.spine.marks`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from shared.mongo import Index
from shared.spine.marks import Document, Marks, Resend

SYSTEM = "system"  # where the writers' marks live: one document per collection
OUTBOX_FIELDS = {"outbox": 1, "outbox_at": 1, "outbox_by": 1, "revision": 1}


def outbox_index(collection: str) -> Index:
    """The outboxes a writer stamped beyond its mark (the sweep; sparse: only documents
    with a stamp)."""
    return Index(collection, [("outbox_by", 1), ("outbox_at", 1)], options={"sparse": True})


def stamped_query(writer: str, after: datetime, until: datetime) -> dict[str, Any]:
    """The outboxes ``writer`` stamped in (after, until]: the ``(outbox_by, outbox_at)`` index."""
    return {"outbox_by": writer, "outbox_at": {"$gt": after, "$lte": until}}


class MongoMarks:
    """:class:`~shared.spine.marks.MarkStorage` for ``collection``; a swept document is read
    with ``fields`` (what resending it needs: its outbox, and whatever rides with it)."""

    def __init__(self, collection: AsyncCollection[Document], system: AsyncCollection[Document],
                 fields: Mapping[str, int] = OUTBOX_FIELDS) -> None:
        self.collection = collection
        self.system = system
        self.marks_id = f"outbox-marks:{collection.name}"
        self.fields = dict(fields)
        self.legacy_done = True  # until the marks document says otherwise

    async def read_marks(self) -> Marks:
        doc = await self.system.find_one({"_id": self.marks_id}) or {}
        self.legacy_done = bool(doc.get("legacy_swept"))
        return dict(doc.get("writers") or {})

    async def write_mark(self, writer: str, through: datetime, at: datetime | None) -> None:
        update: dict[str, Any] = {"$max": {f"writers.{writer}.through": through}}
        if at is not None:
            update["$set"] = {f"writers.{writer}.at": at}
        await self.system.update_one({"_id": self.marks_id}, update, upsert=True)

    async def retire(self, writer: str, at: datetime | None) -> None:
        await self.system.update_one({"_id": self.marks_id, f"writers.{writer}.at": at},
                                     {"$unset": {f"writers.{writer}": ""}})

    async def stamped(self, writer: str, after: datetime, until: datetime) -> list[Document]:
        return await self.collection.find(stamped_query(writer, after, until),
                                          self.fields).to_list(None)

    async def stamped_at(self, writer: str, stamps: Sequence[datetime]) -> list[Document]:
        query = {"outbox_by": writer, "outbox_at": {"$in": list(stamps)}}
        return await self.collection.find(query, self.fields).to_list(None)

    async def sweep_unmarked(self, cutoff: datetime, resend: Resend) -> int:
        """Outboxes written before marks (no ``outbox_by``): resent, then cleared as before.
        One scan per collection, ever: the marks document remembers it."""
        if self.legacy_done:
            return 0
        docs = await self.collection.find(
            {"outbox_at": {"$lte": cutoff}, "outbox_by": {"$exists": False}}, self.fields
        ).to_list(None)
        await resend(docs)
        if docs:
            await self.collection.bulk_write(
                [UpdateOne({"_id": d["_id"], "revision": d["revision"]},
                           {"$set": {"outbox": []}, "$unset": {"outbox_at": ""}}) for d in docs],
                ordered=False)
        await self.system.update_one({"_id": self.marks_id}, {"$set": {"legacy_swept": True}},
                                     upsert=True)
        self.legacy_done = True
        return len(docs)
