"""The writers' marks on MongoDB, for any collection whose documents carry their outbox.

The marks live in one document of the ``system`` collection per collection
(``outbox-marks:<collection>``), a field per writer, each raised with ``$max`` about once a
second.  What a writer stamped is found through its stamp's key in the collection's
multikey key field (``lookup``, :mod:`shared.spine.stamp_keys`, decision 37); the
``(outbox_by, outbox_at)`` index an older version made serves once more, at start-up,
to give the documents it stamped their keys (:func:`key_old_stamps`), and is dropped.
Used by the spine's MongoDB store and the coordinator's run store
(:mod:`shared.spine.marks`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from shared.mongo import drop_index
from shared.spine.aggregate import aware
from shared.spine.marks import Document, Marks, Resend
from shared.spine.stamp_keys import (
    chunks,
    stamp_key,
    stamped_in,
    stamped_with,
    stamps_keys,
    window_keys,
)

log = logging.getLogger("baton.spine")
SYSTEM = "system"  # where the writers' marks live: one document per collection
OUTBOX_FIELDS = {"outbox": 1, "outbox_at": 1, "outbox_by": 1, "revision": 1}
# The index the sweep read through before decision 37: retired once its documents are keyed.
OLD_OUTBOX_INDEX = "outbox_by_1_outbox_at_1"


def stamped_query(key_field: str, keys: Sequence[str]) -> dict[str, Any]:
    """The documents holding one of these stamp keys: one seek per key on ``key_field``."""
    return {key_field: {"$in": list(keys)}}


def old_stamped_query(writer: str, after: datetime) -> dict[str, Any]:
    """What ``writer`` stamped after ``after``, through the old ``(outbox_by, outbox_at)``
    index (the start-up's :func:`key_old_stamps` alone)."""
    return {"outbox_by": writer, "outbox_at": {"$gt": after}}


class MongoMarks:
    """:class:`~shared.spine.marks.MarkStorage` for ``collection``; a swept document is read
    with ``fields`` (what resending it needs: its outbox, and whatever rides with it)."""

    def __init__(self, collection: AsyncCollection[Document], system: AsyncCollection[Document],
                 key_field: str, fields: Mapping[str, int] = OUTBOX_FIELDS) -> None:
        self.collection = collection
        self.system = system
        self.key_field = key_field  # the multikey field the stamps' keys are written into
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
        """One read per :data:`~shared.spine.stamp_keys.CHUNK` buckets of the window (one
        for any window shorter than about 2 h 45 min); a scan beyond ``MAX_KEYS``."""
        keys = window_keys(writer, after, until)
        if keys is None:
            query = {"outbox_by": writer, "outbox_at": {"$gt": after, "$lte": until}}
            return await self.collection.find(query, self.fields).to_list(None)
        docs = await self._holding(keys)
        return [d for d in docs if stamped_in(d, writer, after, until)]

    async def stamped_at(self, writer: str, stamps: Sequence[datetime]) -> list[Document]:
        docs = await self._holding(stamps_keys(writer, stamps))
        wanted = {aware(s) for s in stamps}
        return [d for d in docs if stamped_with(d, writer, wanted)]

    async def _holding(self, keys: Sequence[str]) -> list[Document]:
        found: list[Document] = []
        for chunk in chunks(keys):
            found += await self.collection.find(stamped_query(self.key_field, chunk),
                                                self.fields).to_list(None)
        return found

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


async def key_old_stamps(collection: AsyncCollection[Document], system: AsyncCollection[Document],
                         key_field: str) -> int | None:
    """Once, at start-up, while an older version's ``(outbox_by, outbox_at)`` index exists:
    give every document stamped beyond its writer's mark its stamp's key (so the sweep
    finds it), then drop the index.  How many documents were keyed (None: no old index).

    Each key is added only while the document still holds the stamp read (a save since
    wrote its own key).  Runs again at the next start if cut short, or if an older replica
    made the index again (decision 37: stop the older replicas first).
    """
    if OLD_OUTBOX_INDEX not in await collection.index_information():
        return None
    marks = await system.find_one({"_id": f"outbox-marks:{collection.name}"}) or {}
    keyed = 0
    for writer, mark in (marks.get("writers") or {}).items():
        after = aware(mark.get("through") or datetime(1970, 1, 1, tzinfo=UTC))
        docs = await collection.find(old_stamped_query(writer, after),
                                     {"outbox_at": 1}).to_list(None)
        if docs:
            result = await collection.bulk_write(
                [UpdateOne({"_id": d["_id"], "outbox_by": writer, "outbox_at": d["outbox_at"]},
                           {"$addToSet": {key_field: stamp_key(writer, d["outbox_at"])}})
                 for d in docs], ordered=False)
            keyed += result.modified_count
    await drop_index(collection, OLD_OUTBOX_INDEX)  # or another replica starting at once did
    await system.update_one({"_id": f"migrated:{collection.name}:stamp-keys"},
                            {"$set": {"at": datetime.now(UTC), "keyed": keyed}}, upsert=True)
    log.info("keyed %d outboxes of %s stamped beyond their marks; dropped %s", keyed,
             collection.name, OLD_OUTBOX_INDEX)
    return keyed
