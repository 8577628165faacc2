"""``act(key, command)`` for HTTP requests and timers, group-committed.

Commands that arrive while a save is in flight wait in a queue; one writer task takes
the whole queue at a time: one find for every key in it, each command decided in arrival
order (two on one aggregate: the second sees the first), one save, publish.  Each caller
awaits its own reply.  Commands on aggregates that lost to another writer are decided
again on a fresh read in the next round, a few times, then their callers get
:class:`~shared.spine.aggregate.Conflict`; the rest of the round has landed.  So a
hundred people completing items at once cost a few round trips, not a hundred each.

Over a :class:`~shared.spine.written.WrittenCache` an aggregate may come from memory
(``cached``), perhaps stale: a reply that writes nothing is only given once a write of the
round landed on it; otherwise it is forgotten there and decided again on a fresh read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from shared.spine.aggregate import Aggregate, Conflict, Decided, TimerDue
from shared.spine.store import AggregateStore
from shared.spine.written import WrittenCache

log = logging.getLogger("baton.spine")
Decide = Callable[[Aggregate, Any], Decided]


@dataclass
class _Request:
    key: str
    command: Any
    reply: asyncio.Future[Any]
    attempts: int = 0
    decided: Decided = field(default_factory=Decided)
    unconfirmed: bool = False  # decided on a cached aggregate, writing nothing


class GroupCommit:
    """``decide(aggregate, command)`` is the service's pure step; a :class:`TimerDue`
    command reaches it with the fired timer already gone from ``aggregate.timers``."""

    def __init__(self, store: AggregateStore, decide: Decide, *, attempts: int = 5) -> None:
        self.store = store
        self.decide = decide
        self.attempts = attempts
        self.rounds = 0  # how many load+save rounds ran (each: one find, at most one write)
        self._queue: list[_Request] = []
        self._writer: asyncio.Task[None] | None = None

    async def act(self, key: str, command: Any) -> Any:
        """The reply ``decide`` gave, once the change landed; Conflict after the retries."""
        request = _Request(key, command, asyncio.get_running_loop().create_future())
        self._queue.append(request)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await request.reply

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                again = await self._round(batch)
            except Exception as exc:  # the store failed: every caller of the round hears it
                for request in batch:
                    if not request.reply.done():
                        request.reply.set_exception(exc)
                continue
            self._queue[:0] = again

    async def _round(self, batch: list[_Request]) -> list[_Request]:
        self.rounds += 1
        working = dict(await self.store.load(r.key for r in batch))
        decided: list[_Request] = []
        for request in batch:
            if request.reply.done():  # its caller went away
                continue
            aggregate = working.get(request.key) or Aggregate(request.key)
            try:
                request.decided = self._decide(aggregate, request.command)
            except Exception as exc:
                request.reply.set_exception(exc)
                continue
            request.unconfirmed = aggregate.cached and not request.decided.changes
            working[request.key] = aggregate.after(request.decided)
            decided.append(request)
        lost: set[Hashable] = set()
        changed = [a for a in working.values() if a.changed]
        try:
            await self.store.save(changed)
        except Conflict as exc:
            lost = set(exc.keys)
        written = {a.key for a in changed} - lost  # each under the revision it was decided on
        stale = {r.key for r in decided if r.unconfirmed and r.key not in written | lost}
        if stale and isinstance(self.store, WrittenCache):
            self.store.forget(stale)
        await self.store.publish([e for r in decided if r.key not in lost | stale
                                  for e in r.decided.answers])
        again = []
        for request in decided:
            if request.key in stale:  # the same command on a fresh read, in the next round
                again.append(request)
            elif request.key not in lost:
                request.reply.set_result(request.decided.reply)
            elif request.attempts + 1 < self.attempts:
                request.attempts += 1
                again.append(request)
            else:
                request.reply.set_exception(Conflict([request.key]))
        return again

    def _decide(self, aggregate: Aggregate, command: Any) -> Decided:
        if not isinstance(command, TimerDue):
            return self.decide(aggregate, command)
        rest = aggregate.without_timer(command.timer)
        if rest is None:
            return Decided()  # fired already (by this or another replica): nothing to do
        epoch = command.timer.get("epoch")
        if epoch is not None and (aggregate.state or {}).get("epoch", epoch) != epoch:
            return Decided(timers=rest)  # planned for an earlier epoch: it only leaves
        decided = self.decide(Aggregate(aggregate.key, aggregate.state, aggregate.revision,
                                        aggregate.applied, aggregate.outbox, rest), command)
        if decided.timers is None:
            return Decided(decided.state, decided.publish, rest, decided.reply, decided.answers)
        return decided
