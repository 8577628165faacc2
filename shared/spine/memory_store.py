"""The aggregate store in memory, for handler tests: the MongoDB store's behaviour, no server.

Revision conflicts, outbox marks and sweeps, timer claims and leases behave as in
:mod:`shared.spine.mongo_store`; ``round_trips`` counts what MongoDB would be sent
(``find``, ``write``, ``mark``, ``claim``), so a test can bound a path's cost in counts.
A store made ``sharing`` another is a second writer on the same documents (another
replica, or the process after a restart).  Given a ``key_field``, a stamped document
carries its stamp's key there and the sweep finds it by that key, as on MongoDB
(decision 37); without one, by its stamp alone.
"""

from __future__ import annotations

import copy
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from contracts import Envelope, parse
from shared.outgoing import Outgoing
from shared.spine.aggregate import aware
from shared.spine.marks import Document, Marks, Resend, utc_now
from shared.spine.stamp_keys import stamped_in, stamped_with, stamps_keys, window_keys
from shared.spine.store import Due, StoreBase


class MemoryAggregateStore(StoreBase):
    def __init__(self, *, sharing: MemoryAggregateStore | None = None, mark_delay: float = 0.0,
                 clock: Callable[[], datetime] = utc_now, key_field: str | None = None) -> None:
        self.documents: dict[str, Document] = sharing.documents if sharing else {}
        self.writers: dict[str, dict[str, Any]] = sharing.writers if sharing else {}
        self.round_trips: Counter[str] = Counter()
        if key_field is None and sharing is not None:
            key_field = sharing.key_field  # the same collection: the same key field
        super().__init__(MemoryMarks(self.documents, self.writers, self.round_trips, key_field),
                         key_field=key_field, mark_delay=mark_delay, clock=clock)
        # What went out, as a consumer parses it (and as sent: ``sent``).
        self.published: list[Envelope] = []
        self.sent: list[Outgoing] = []
        self.broken = False  # publishing fails (a broker away, or a crash before it)
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

    async def _send(self, messages: Sequence[Outgoing]) -> None:
        if self.broken:
            raise ConnectionError("the broker is away")
        self.sent.extend(messages)
        self.published.extend(parse(m.value) for m in messages)

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


class MemoryMarks:
    """The writers' marks (``writers``) and the reads of what they stamped, in memory."""

    def __init__(self, documents: dict[str, Document], writers: dict[str, dict[str, Any]],
                 round_trips: Counter[str], key_field: str | None = None) -> None:
        self.documents = documents
        self.writers = writers
        self.round_trips = round_trips
        self.key_field = key_field

    async def read_marks(self) -> Marks:
        self.round_trips["find"] += 1
        return {writer: dict(mark) for writer, mark in self.writers.items()}

    async def write_mark(self, writer: str, through: datetime, at: datetime | None) -> None:
        self.round_trips["mark"] += 1
        mark = self.writers.setdefault(writer, {})
        mark["through"] = max(through, mark.get("through", through))
        if at is not None:
            mark["at"] = at

    async def retire(self, writer: str, at: datetime | None) -> None:
        self.round_trips["mark"] += 1
        if writer in self.writers and self.writers[writer].get("at") == at:
            del self.writers[writer]

    async def stamped(self, writer: str, after: datetime, until: datetime) -> list[Document]:
        self.round_trips["find"] += 1
        docs = self._holding(lambda: window_keys(writer, after, until))
        return [copy.deepcopy(d) for d in docs if stamped_in(d, writer, after, until)]

    async def stamped_at(self, writer: str, stamps: Sequence[datetime]) -> list[Document]:
        self.round_trips["find"] += 1
        docs = self._holding(lambda: stamps_keys(writer, stamps))
        wanted = {aware(s) for s in stamps}
        return [copy.deepcopy(d) for d in docs if stamped_with(d, writer, wanted)]

    def _holding(self, keys: Callable[[], list[str] | None]) -> list[Document]:
        """The documents holding one of ``keys`` in the key field (every one: no key field,
        or too many keys)."""
        field = self.key_field
        found = keys() if field is not None else None
        if field is None or found is None:
            return list(self.documents.values())
        wanted = set(found)
        return [d for d in self.documents.values() if wanted & set(d.get(field) or ())]

    async def sweep_unmarked(self, cutoff: datetime, resend: Resend) -> int:
        return 0  # stores from before marks exist on MongoDB only


def _matches(doc: Mapping[str, Any], query: Mapping[str, Any]) -> bool:
    """MongoDB's match for values and ``$in``; an array field matches by any element."""
    for name, clause in query.items():
        value = doc.get(name)
        values = value if isinstance(value, list) else [value]
        if isinstance(clause, Mapping):
            if set(clause) != {"$in"}:
                raise ValueError(f"the in-memory store matches values and $in, not {clause}")
            if not any(v in clause["$in"] for v in values):
                return False
        elif value != clause and clause not in values:
            return False
    return True
