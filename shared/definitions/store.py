"""Published definitions in MongoDB: immutable versions, cached forever once read.

The trigger service owns this collection and is the only one to read it; it publishes
each version on the definitions topic, which is how the coordinator learns of them
(shared/definitions/catalog.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from shared.definitions.model import Definition
from shared.mongo import Index

COLLECTION = "definitions"
INDEXES = [Index(COLLECTION, [("name", 1), ("version", -1)], unique=True)]


class UnknownDefinition(LookupError):
    pass


class DefinitionStore:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.collection = db[COLLECTION]
        self._cache: dict[tuple[str, int], Definition] = {}

    async def get(self, name: str, version: int | None = None) -> Definition:
        if version is not None and (name, version) in self._cache:
            return self._cache[(name, version)]
        query: dict[str, Any] = {"name": name}
        if version is not None:
            query["version"] = version
        doc = await self.collection.find_one(query, sort=[("version", DESCENDING)])
        if doc is None:
            which = f"version {version} of " if version else ""
            raise UnknownDefinition(f"no published {which}orchestration {name!r}")
        definition = Definition.model_validate(doc["definition"])
        self._cache[(name, definition.version)] = definition
        return definition

    async def publish(
        self, definition: Definition, *, published_by: str, now: datetime
    ) -> Definition:
        """Store the next version; a concurrent publish of the same name retries."""
        for _ in range(5):
            latest = await self.collection.find_one(
                {"name": definition.name}, sort=[("version", DESCENDING)]
            )
            version = (latest["version"] if latest else 0) + 1
            pinned = definition.model_copy(update={"version": version})
            try:
                await self.collection.insert_one(
                    {
                        "_id": f"{definition.name}:{version}",
                        "name": definition.name,
                        "version": version,
                        "definition": pinned.model_dump(mode="json"),
                        "published_by": published_by,
                        "published_at": now,
                    }
                )
            except Exception as exc:  # duplicate key: someone published first
                if "E11000" in str(exc) or "duplicate" in str(exc).lower():
                    continue
                raise
            self._cache[(pinned.name, version)] = pinned
            return pinned
        raise RuntimeError(f"could not publish {definition.name}: too many concurrent publishes")

    async def list(self) -> list[dict[str, Any]]:
        cursor = self.collection.find({}, {"definition": 0}).sort([("name", 1), ("version", -1)])
        return [doc async for doc in cursor]

    async def stored(self) -> AsyncIterator[dict[str, Any]]:
        """Every published version, as stored (to publish them all again)."""
        async for doc in self.collection.find({}).sort([("name", 1), ("version", 1)]):
            yield doc

    async def raw(self, name: str, version: int | None = None) -> dict[str, Any] | None:
        query: dict[str, Any] = {"name": name}
        if version is not None:
            query["version"] = version
        return await self.collection.find_one(query, sort=[("version", DESCENDING)])
