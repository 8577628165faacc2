"""The aggregate store in memory, for handler tests: the MongoDB store's behaviour, no server.

Revision conflicts, deferred clears, timer claims and leases behave as in
:mod:`shared.spine.mongo_store`; ``round_trips`` counts what MongoDB would be sent
(``find``, ``write``, ``clear``, ``claim``), so a test can bound a path's cost in counts.
"""

from __future__ import annotations

import copy
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from contracts import Envelope
from shared.spine.aggregate import aware
from shared.spine.store import Document, Due, StoreBase


class MemoryAggregateStore(StoreBase):
    def __init__(self, *, clear_delay: float = 0.0) -> None:
        super().__init__(clear_delay=clear_delay)
        self.documents: dict[str, Document] = {}
        self.published: list[Envelope] = []
        self.round_trips: Counter[str] = Counter()
        # Runs just before a write lands (a test's way to slip another writer in first).
        self.before_write: Callable[[], Awaitable[None]] | None = None

    async def _find(self, query: Mapping[str, Any]) -> list[Document]:
        self.round_trips["find"] += 1
        return [copy.deepcopy(d) for d in self.documents.values() if _matches(d, query)]

    async def _write(self, docs: Sequence[tuple[int, Document]]) -> set[str]:
        self.round_trips["write"] += 1
        if self.before_write is not None:
            hook, self.before_write = self.before_write, None
            await hook()
        lost = set()
        for revision, doc in docs:
            stored = self.documents.get(doc["_id"])
            if int((stored or {}).get("revision") or 0) != revision:
                lost.add(doc["_id"])
            else:
                self.documents[doc["_id"]] = copy.deepcopy(doc)
        return lost

    async def _send(self, envelopes: Sequence[Envelope]) -> None:
        self.published.extend(envelopes)

    async def _clear(self, published: Mapping[str, int]) -> None:
        self.round_trips["clear"] += 1
        for key, revision in published.items():
            doc = self.documents.get(key)
            if doc is not None and doc.get("revision") == revision:
                doc["outbox"] = []
                doc.pop("outbox_at", None)

    async def due(self, until: datetime, limit: int) -> list[Due]:
        self.round_trips["find"] += 1
        found = sorted((d for d in self.documents.values() if d.get("next_timer_at")
                        and aware(d["next_timer_at"]) <= until),
                       key=lambda d: aware(d["next_timer_at"]))[:limit]
        return [(d["_id"], d["next_timer_at"], tuple(copy.deepcopy(d.get("timers") or ())))
                for d in found]

    async def claim(self, due: Sequence[Due], until: datetime) -> list[str]:
        if not due:
            return []
        self.round_trips["claim"] += 1
        token, ours = uuid.uuid4().hex, []
        for key, at, _ in due:
            doc = self.documents.get(key)
            if doc is not None and doc.get("next_timer_at") == at:
                doc.update(next_timer_at=until, timer_lease=token)
                ours.append(key)
        return ours

    def insert(self, doc: Document) -> None:
        """Store a document as it is (a test's starting point)."""
        self.documents[doc["_id"]] = copy.deepcopy(doc)


def _matches(doc: Mapping[str, Any], query: Mapping[str, Any]) -> bool:
    for name, clause in query.items():
        value = doc.get(name)
        if isinstance(clause, Mapping):
            if set(clause) != {"$in"}:
                raise ValueError(f"the in-memory store matches values and $in, not {clause}")
            if value not in clause["$in"]:
                return False
        elif value != clause:
            return False
    return True
