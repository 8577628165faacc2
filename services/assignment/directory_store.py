"""The directory (users, groups, queues) in MongoDB: one document per entity.

Loaded whole and cached briefly: directories are small next to the work they route,
and a resolution must see one consistent picture.
"""

from __future__ import annotations

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

    async def current(self, *, fresh: bool = False) -> Directory:
        """The directory, as cached for up to CACHE_SECONDS, or as stored now (``fresh``).

        Another replica may have loaded a new directory within the last seconds: a caller
        about to refuse something because a person, group or queue is unknown asks again
        with ``fresh``.
        """
        if not fresh and self._cached and self._cached[0] > time.monotonic():
            return self._cached[1]
        document: dict[str, list[dict[str, Any]]] = {}
        for section in SECTIONS:
            docs = await self.db[section].find({}).to_list(None)
            document[section] = [{**{k: v for k, v in d.items() if k != "_id"}, "id": d["_id"]}
                                 for d in docs]
        directory = Directory.from_document(document)
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
        self._cached = None
        return directory
