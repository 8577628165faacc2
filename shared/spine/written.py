"""The aggregates this process saved, kept to decide on without reading them back.

A person's command on a work item usually follows the write that opened it (or the last
one that changed it) from this very process, so :class:`WrittenCache` keeps each aggregate
as its save left it and :meth:`~WrittenCache.load` gives it from memory, exactly as a read
would give it (the written document through BSON, its outbox gone out: a save returns
only once it published).  Another replica's write makes an entry stale, which is safe:

- a change decided on a stale entry is written under the revision it holds, so its write
  loses (:class:`~shared.spine.aggregate.Conflict`): the key is forgotten here and the
  command decided again on a fresh read (:class:`~shared.spine.act.GroupCommit`);
- an answer that writes nothing (a rejection, "nothing to do") decided on an entry
  (``Aggregate.cached``) is not given until a fresh read decides it again, unless a write
  of the same round landed under that revision (GroupCommit again).

Only the aggregates ``keep`` accepts are kept (a work item not finished yet: nobody acts
on a finished one), at most ``size`` of them and ``budget`` bytes, the least recently used
leaving first.  Each
is kept as the BSON the store would read (encoded when saved, decoded when loaded: the
same two steps a read from memory took before), less than half the memory of the
document as Python objects (a bench item: 1.3 kB against 3.4): room for every item a
10,000-run burst keeps open, whose completions otherwise missed here and cost a find.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import bson

from contracts import Envelope
from shared.packed import CODEC
from shared.spine.aggregate import Aggregate, Conflict, aggregate_of, document_of
from shared.spine.store import AggregateStore, Due

SIZE = 25_000  # about 40 MB of bench items
BUDGET = 64 * 2**20  # bytes: fewer items when they are large (a big record or form)


class WrittenCache:
    """An :class:`~shared.spine.store.AggregateStore` over ``store`` that loads by key
    from what it saved (queries, timers and publishing go to ``store``)."""

    def __init__(self, store: AggregateStore, *, keep: Callable[[Aggregate], bool],
                 size: int = SIZE, budget: int = BUDGET) -> None:
        self.store = store
        self.keep = keep
        self.size = size
        self.budget = budget
        # key -> (its revision, the document as BSON)
        self._written: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        self._bytes = 0  # the documents' bytes kept

    async def load(self, keys: Iterable[str]) -> dict[str, Aggregate]:
        found: dict[str, Aggregate] = {}
        missing = []
        for key in dict.fromkeys(keys):
            kept = self._written.get(key)
            if kept is None:
                missing.append(key)
                continue
            self._written.move_to_end(key)
            doc: dict[str, Any] = bson.decode(kept[1], codec_options=CODEC)
            found[key] = aggregate_of(doc, cached=True)
        if missing:
            found.update(await self.store.load(missing))
        return found

    async def load_where(self, query: Mapping[str, Any]) -> dict[str, Aggregate]:
        return await self.store.load_where(query)

    async def save(self, changes: Sequence[Aggregate]) -> None:
        """Save through ``store``; keep what landed, forget what did not (or may not have)."""
        changed = [a for a in changes if a.changed]
        try:
            await self.store.save(changed)
        except Conflict as exc:
            lost = set(exc.keys)
            self._remember(a for a in changed if a.key not in lost)  # they were published
            self.forget(lost)
            raise
        except BaseException:
            self.forget(a.key for a in changed)
            raise
        self._remember(changed)

    def forget(self, keys: Iterable[str]) -> None:
        """Read these again from the store next time."""
        for key in keys:
            self._drop(key)

    def _remember(self, saved: Iterable[Aggregate]) -> None:
        for aggregate in saved:
            if not self.keep(aggregate):
                self._drop(aggregate.key)
                continue
            known = self._written.get(aggregate.key)
            if known is not None and known[0] > aggregate.revision + 1:
                continue  # a later save of it landed first
            # As written, its outbox out already (the stamp only matters to an outbox).
            doc = document_of(Aggregate(aggregate.key, aggregate.state, aggregate.revision,
                                        aggregate.applied, (), aggregate.timers), None)
            self._drop(aggregate.key)
            encoded = bson.encode(doc)
            self._written[aggregate.key] = (doc["revision"], encoded)
            self._bytes += len(encoded)
        while self._written and (len(self._written) > self.size or self._bytes > self.budget):
            self._bytes -= len(self._written.popitem(last=False)[1][1])

    def _drop(self, key: str) -> None:
        kept = self._written.pop(key, None)
        if kept is not None:
            self._bytes -= len(kept[1])

    # -- the rest is the store's ------------------------------------------------------------
    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        await self.store.publish(envelopes)

    async def due(self, until: datetime, limit: int) -> list[Due]:
        return await self.store.due(until, limit)

    async def claim(self, due: Sequence[Due], until: datetime) -> list[str]:
        return await self.store.claim(due, until)

    def on_timer(self, listener: Callable[[datetime], None]) -> None:
        self.store.on_timer(listener)

