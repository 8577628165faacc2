"""Notice when the broker lost its data, and tell every service to reconcile.

A cluster can be rebuilt empty (or a broker's disk lost): the topics vanish with whatever
was in flight.  Every service checks its topics every few seconds and recreates missing
ones (where topic creation is on).  A service that had to recreate topics in a
deployment that had them before (the ``broker`` document in the ``system`` collection
says so) bumps the broker epoch there.  Every service watches that epoch, and when it
moves, runs its reconcile hooks: the coordinator re-sends the dispatches of steps in
flight, the trigger the starts it accepted lately, and everyone their outboxes.

The epoch lives in MongoDB because the broker cannot be trusted to remember its own
loss, and because the service that recreates the topics is rarely the only one that
has something to re-send.  It is the one document the services share: where services keep
their data on servers of their own (decision 25), it stays on the shared one
(``mongodb_shared_uri``), while each service watches the restarts of its own.

The store can lose too: a MongoDB server killed outright may come back without the writes
it acknowledged last (the embedded one, like mongod with ``j: false``, keeps its log in
memory for a moment).  A run whose last save was lost waits for a message that was already
consumed.  So the same check watches the server's process (``serverStatus``: its pid and
uptime), and when it has restarted, every service reconciles as after a broker loss: the
consumers go back a minute and re-read (repeats are dropped by id, what was lost is applied
again), dispatches in flight are re-sent, the trigger re-sends its recent starts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from shared.metrics import ServiceMetrics
from shared.settings import ServiceSettings
from shared.topics import ensure_service_topics, topics_of

log = logging.getLogger("baton.broker")
SYSTEM = "system"
BROKER = "broker"
Hook = Callable[[], Awaitable[Any]]
# How long before a server was last seen up its lost writes may have been acknowledged
# (the embedded one flushes its log within a second; a minute is plenty).
LOST_WRITES_SECONDS = 60.0


class BrokerWatch:
    def __init__(self, settings: ServiceSettings, db: AsyncDatabase[dict[str, Any]],
                 metrics: ServiceMetrics, *,
                 shared: AsyncDatabase[dict[str, Any]] | None = None) -> None:
        """``db``: the service's own database (its server's restarts are watched);
        ``shared``: where the broker's epoch is kept (by default ``db``)."""
        self.settings = settings
        self.db = db
        self.system = (shared if shared is not None else db)[SYSTEM]
        self.metrics = metrics
        self.service = settings.service_name
        self.hooks: list[Hook] = []  # the services' reconcile, after the consumers moved
        self.rewind: Hook | None = None  # broker loss: every consumer to the new beginning
        # Store restart: every consumer back to a time (seconds since the epoch).
        self.replay_since: Callable[[float], Awaitable[Any]] | None = None
        self.store_seen_at = 0.0  # when the server was last seen up, before this check
        self.store: tuple[Any, float] | None = None  # (pid, uptime) last seen
        self.store_watched = True  # False once the server refused serverStatus

    async def ensure_topics(self) -> None:
        """Create this service's missing topics and record what the check found.

        What was known is read before the check: a topic this service creates while another
        service, which found it already created, records it as seen is new, not lost (the
        services start together, and each creates the topics it uses).
        """
        known = await self.system.find_one({"_id": BROKER}) or {}
        await self.topics_ensured(await ensure_service_topics(self.settings), known)

    async def topics_ensured(self, created: list[str],
                             known: dict[str, Any] | None = None) -> None:
        """Record what a topic check found.

        The ``broker`` document remembers every topic seen to exist.  A topic that had to
        be created although it existed before (in ``known``, read before the check) is a
        loss; one never seen is just new (each service creates its own topics, so a fresh
        deployment creates them in turns).
        """
        now = datetime.now(UTC)
        if known is None:
            known = await self.system.find_one({"_id": BROKER}) or {}
        lost = sorted(set(created) & set(known.get("topics", ())))
        seen = [t.name for t in topics_of(self.service)]
        update: dict[str, Any] = {"$setOnInsert": {"since": now},
                                  "$addToSet": {"topics": {"$each": seen}}}
        if lost:
            log.error("the broker lost its topics (%s): recreated them; every service "
                      "reconciles what was in flight from MongoDB", ", ".join(lost))
            update |= {"$inc": {"epoch": 1}, "$set": {"reset_at": now, "reset_by": self.service,
                                                      "recreated": lost}}
        else:
            update["$setOnInsert"]["epoch"] = 0
        await self.system.update_one({"_id": BROKER}, update, upsert=True)

    async def __call__(self) -> bool:
        """One check; True when this service reconciled.

        Which epoch each service has reconciled is kept beside the epoch, so a service
        that was down when the loss was noticed reconciles when it comes back.
        """
        await self.ensure_topics()
        seen_before = self.store_seen_at
        if await self.store_restarted():
            # What it may have lost was acknowledged shortly before it stopped, after it was
            # last seen up: read again from a minute before that.
            since = seen_before - LOST_WRITES_SECONDS
            replay = self.replay_since
            await self._reconcile(None if replay is None else lambda: replay(since))
            return True
        doc = await self.system.find_one({"_id": BROKER}) or {}
        epoch = int(doc.get("epoch", 0))
        done = int(doc.get("reconciled", {}).get(self.service, 0))
        if epoch <= done:
            return False
        self.metrics.broker_resets.labels(self.service).inc()
        log.warning("broker epoch %d (reset by %s at %s): reconciling", epoch,
                    doc.get("reset_by"), doc.get("reset_at"))
        await self._reconcile(self.rewind)
        await self.system.update_one({"_id": BROKER},
                                     {"$max": {f"reconciled.{self.service}": epoch}})
        return True

    async def store_restarted(self) -> bool:
        """Whether the MongoDB server restarted since the last check (not at the first)."""
        if not self.store_watched:
            return False
        try:
            status = await self.db.client.admin.command("serverStatus")
        except OperationFailure as exc:  # a managed server may not grant serverStatus
            log.warning("cannot watch MongoDB restarts (serverStatus refused: %s)", exc)
            self.store_watched = False
            return False
        seen = (status.get("pid"), float(status.get("uptime", 0)))
        last, self.store = self.store, seen
        self.store_seen_at = time.time()
        if last is None or (seen[0] == last[0] and seen[1] >= last[1]):
            return False
        self.metrics.store_restarts.labels(self.service).inc()
        log.warning("MongoDB restarted (pid %s, up %.0f s): reconciling, in case it lost "
                    "writes it had acknowledged", seen[0], seen[1])
        return True

    async def _reconcile(self, consumers_first: Hook | None) -> None:
        for hook in [consumers_first, *self.hooks]:
            if hook is not None:
                await hook()
