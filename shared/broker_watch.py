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
has something to re-send.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from shared.metrics import ServiceMetrics
from shared.settings import ServiceSettings
from shared.topics import ensure_service_topics, topics_of

log = logging.getLogger("baton.broker")
SYSTEM = "system"
BROKER = "broker"
Hook = Callable[[], Awaitable[Any]]


class BrokerWatch:
    def __init__(self, settings: ServiceSettings, db: AsyncDatabase[dict[str, Any]],
                 metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.system = db[SYSTEM]
        self.metrics = metrics
        self.service = settings.service_name
        self.hooks: list[Hook] = []

    async def topics_ensured(self, created: list[str]) -> None:
        """Record what a topic check found.

        The ``broker`` document remembers every topic seen to exist.  A topic that had to
        be created although it existed before is a loss; one never seen is just new (each
        service creates its own topics, so a fresh deployment creates them in turns).
        """
        now = datetime.now(UTC)
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
        await self.topics_ensured(await ensure_service_topics(self.settings))
        doc = await self.system.find_one({"_id": BROKER}) or {}
        epoch = int(doc.get("epoch", 0))
        done = int(doc.get("reconciled", {}).get(self.service, 0))
        if epoch <= done:
            return False
        self.metrics.broker_resets.labels(self.service).inc()
        log.warning("broker epoch %d (reset by %s at %s): reconciling", epoch,
                    doc.get("reset_by"), doc.get("reset_at"))
        for hook in self.hooks:
            await hook()
        await self.system.update_one({"_id": BROKER},
                                     {"$max": {f"reconciled.{self.service}": epoch}})
        return True
