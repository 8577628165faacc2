"""The ``step_attempts`` collection: one stored outcome per attempt (its idempotency key).

An attempt document holds the outcome messages the step-runner publishes for it.  It is
written once, by an insert-if-absent: when two deliveries of one attempt ran at once (a
rebalance, a re-sent dispatch), the first outcome stored is the one both publish.
:class:`MemoryAttempts` stands in for MongoDB in handler tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from shared.mongo import Index

ATTEMPTS = "step_attempts"
INDEXES = [Index(ATTEMPTS, [("run_id", 1)]), Index(ATTEMPTS, [("finished_at", -1)])]
Document = dict[str, Any]


class AttemptStore(Protocol):
    async def stored(self, keys: Iterable[str]) -> dict[str, Document]:
        """The attempts among ``keys`` whose outcome is stored, by key."""
        ...

    async def save(self, documents: Sequence[Document]) -> list[Document]:
        """Store each attempt unless one is stored already; returns what is stored, in order."""
        ...


class MongoAttempts:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.attempts = db[ATTEMPTS]

    async def stored(self, keys: Iterable[str]) -> dict[str, Document]:
        wanted = list(keys)
        if not wanted:
            return {}
        return {doc["_id"]: doc async for doc in self.attempts.find({"_id": {"$in": wanted}})}

    async def save(self, documents: Sequence[Document]) -> list[Document]:
        if not documents:
            return []
        result = await self.attempts.bulk_write(
            [UpdateOne({"_id": doc["_id"]}, {"$setOnInsert": doc}, upsert=True)
             for doc in documents],
            ordered=False,
        )
        inserted = set(result.upserted_ids or ())
        lost = [doc["_id"] for i, doc in enumerate(documents) if i not in inserted]
        # Another delivery of the attempt stored its outcome first (rare): that one stands.
        earlier = await self.stored(lost) if lost else {}
        return [earlier.get(doc["_id"], doc) for doc in documents]


class MemoryAttempts:
    """The store for handler tests; counts its round trips like the real one would make."""

    def __init__(self) -> None:
        self.documents: dict[str, Document] = {}
        self.reads = 0
        self.writes = 0

    async def stored(self, keys: Iterable[str]) -> dict[str, Document]:
        wanted = list(keys)
        if not wanted:
            return {}
        self.reads += 1
        return {key: self.documents[key] for key in wanted if key in self.documents}

    async def save(self, documents: Sequence[Document]) -> list[Document]:
        if not documents:
            return []
        self.writes += 1
        return [self.documents.setdefault(doc["_id"], doc) for doc in documents]
