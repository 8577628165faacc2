"""The directory (users, groups, queues) in MongoDB: one document per entity.

Loaded whole and cached briefly: directories are small next to the work they route,
and a resolution must see one consistent picture.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pymongo import ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase

from services.assignment.core.directory import Directory

SECTIONS = ("users", "groups", "queues")
CACHE_SECONDS = 2.0


class DirectoryStore:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.db = db
        self._cached: tuple[float, Directory] | None = None
        self._reading: asyncio.Future[Directory] | None = None
        self._generation = 0  # bumped by every load: a read begun before it is not cached

    async def current(self, *, fresh: bool = False) -> Directory:
        """The directory, as cached for up to CACHE_SECONDS, or as stored now (``fresh``).

        When the cache runs out, the callers of that moment share one read: the Work Guide
        serves many people at once, and each reading the directory for itself was most of
        its MongoDB round trips in a burst.  Another replica may have loaded a new
        directory within the last seconds: a caller about to refuse something because a
        person, group or queue is unknown asks again with ``fresh``.
        """
        if fresh:
            return await self._read()
        if self._cached and self._cached[0] > time.monotonic():
            return self._cached[1]
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(self._read())
        return await asyncio.shield(self._reading)

    async def _read(self) -> Directory:
        generation = self._generation
        document: dict[str, list[dict[str, Any]]] = {}
        for section in SECTIONS:
            docs = await self.db[section].find({}).to_list(None)
            document[section] = [{**{k: v for k, v in d.items() if k != "_id"}, "id": d["_id"]}
                                 for d in docs]
        directory = Directory.from_document(document)
        if generation == self._generation:
            self._cached = (time.monotonic() + CACHE_SECONDS, directory)
        return directory

    async def load(self, document: dict[str, Any]) -> Directory:
        """Replace the directory with a validated document (the examples/directory.yaml shape)."""
        directory = Directory.from_document(document)
        for section, entries in directory.to_document().items():
            ids = [entry["id"] for entry in entries]
            ops = [ReplaceOne({"_id": e["id"]}, {k: v for k, v in e.items() if k != "id"},
                              upsert=True) for e in entries]
            if ops:
                await self.db[section].bulk_write(ops)
            await self.db[section].delete_many({"_id": {"$nin": ids}})
        self._generation += 1
        self._cached = None
        return directory
