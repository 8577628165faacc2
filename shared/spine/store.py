"""The aggregate store: load aggregates, save a batch of them in one write, publish, clear.

:class:`AggregateStore` is what the spine needs of a store; :class:`StoreBase` holds
what every implementation shares, so the MongoDB store and the in-memory one behave
alike (revision conflicts, outboxes published after the write, clears deferred, timers).

The guarantee: a change lands with its new state, the id of the message applied and
its outbox in one conditional write; only then are its messages published; clearing a
published outbox costs no write on the path of a change: the next save of that aggregate
drops it (a load forgets what this process published), and whatever is still uncleared
goes in one bulk write a moment later.  A crash in between leaves an outbox the sweep
publishes again; consumers drop repeats by event id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from contracts import Envelope, parse_dict
from shared.spine.aggregate import Aggregate, Conflict, aggregate_of, aware, document_of

Document = dict[str, Any]
Due = tuple[str, datetime, tuple[Mapping[str, Any], ...]]  # key, next_timer_at, timers


class AggregateStore(Protocol):
    async def load(self, keys: Iterable[str]) -> dict[str, Aggregate]: ...

    async def load_where(self, query: Mapping[str, Any]) -> dict[str, Aggregate]: ...

    async def save(self, changes: Sequence[Aggregate]) -> None: ...

    async def publish(self, envelopes: Sequence[Envelope]) -> None: ...

    async def due(self, until: datetime, limit: int) -> list[Due]: ...

    async def claim(self, due: Sequence[Due], until: datetime) -> list[str]: ...

    def on_timer(self, listener: Callable[[datetime], None]) -> None: ...


class StoreBase:
    """Save and load around four primitives each store implements (see their docstrings)."""

    def __init__(self, *, clear_delay: float = 0.2) -> None:
        self.unclear: dict[str, int] = {}  # key -> revision whose outbox went out
        self.clear_delay = clear_delay
        self._to_clear = asyncio.Event()
        self._timer_listeners: list[Callable[[datetime], None]] = []

    # -- what each store implements ------------------------------------------------------
    async def _find(self, query: Mapping[str, Any]) -> list[Document]:
        """The documents matching ``query`` (``_id``/fields by equality or ``$in``): one read."""
        raise NotImplementedError

    async def _write(self, docs: Sequence[tuple[int, Document]]) -> set[str]:
        """Write each (revision read, document) conditionally, in one write; the keys lost."""
        raise NotImplementedError

    async def _send(self, envelopes: Sequence[Envelope]) -> None:
        raise NotImplementedError

    async def _clear(self, published: Mapping[str, int]) -> None:
        """Empty the outboxes of these keys still at these revisions, in one write."""
        raise NotImplementedError

    # -- the spine's side ------------------------------------------------------------------
    async def load(self, keys: Iterable[str]) -> dict[str, Aggregate]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        return self._aggregates(await self._find({"_id": {"$in": wanted}}))

    async def load_where(self, query: Mapping[str, Any]) -> dict[str, Aggregate]:
        return self._aggregates(await self._find(query))

    async def save(self, changes: Sequence[Aggregate]) -> None:
        """Write the changed aggregates in one write, publish their outboxes, defer clears.

        Raises :class:`Conflict` naming the keys whose revision moved; the others landed
        and their messages went out.
        """
        changed = [a for a in changes if a.changed]
        if not changed:
            return
        now = datetime.now(UTC)
        docs = {a.key: document_of(a, now) for a in changed}
        lost = await self._write([(a.revision, docs[a.key]) for a in changed])
        landed = [docs[a.key] for a in changed if a.key not in lost]
        for doc in landed:
            self.unclear.pop(doc["_id"], None)  # its older outbox is gone with this write
        await self.publish_outboxes(landed)
        soonest = min((aware(d["next_timer_at"]) for d in landed if "next_timer_at" in d),
                      default=None)
        if soonest is not None:
            for listener in self._timer_listeners:
                listener(soonest)
        if lost:
            raise Conflict(sorted(lost))

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        if envelopes:
            await self._send(envelopes)

    async def publish_outboxes(self, docs: Iterable[Mapping[str, Any]]) -> int:
        """Publish the outboxes of documents just written; their clear comes later."""
        pending = [d for d in docs if d.get("outbox")]
        if not pending:
            return 0
        await self._send([parse_dict(dict(m)) for d in pending for m in d["outbox"]])
        self.unclear.update({d["_id"]: d["revision"] for d in pending})
        self._to_clear.set()
        return sum(len(d["outbox"]) for d in pending)

    async def clear_published(self) -> int:
        """Clear every outbox published since the last call, in one bulk write."""
        if not self.unclear:
            return 0
        pending, self.unclear = self.unclear, {}
        await self._clear(pending)
        return len(pending)

    async def clear_when_published(self) -> int:
        """A job that sleeps until something was published, then clears it all at once."""
        await self._to_clear.wait()
        self._to_clear.clear()
        await asyncio.sleep(self.clear_delay)  # let the outboxes of a burst gather
        return await self.clear_published()

    def on_timer(self, listener: Callable[[datetime], None]) -> None:
        """Call ``listener`` with the soonest timer of each save (to wake a timer loop)."""
        self._timer_listeners.append(listener)

    def forget_published(self, doc: Document) -> Document:
        """Drop from a document just read an outbox this process published already."""
        if doc.get("outbox") and self.unclear.get(doc["_id"]) == doc.get("revision"):
            doc["outbox"] = []
            doc.pop("outbox_at", None)
        return doc

    def _aggregates(self, docs: Iterable[Document]) -> dict[str, Aggregate]:
        return {d["_id"]: aggregate_of(self.forget_published(d)) for d in docs}
