"""Notice when the broker lost its data, and tell every service to reconcile.

The embedded broker keeps nothing on disk, and a real cluster can be rebuilt empty: the
topics vanish with whatever was in flight.  Every service checks the topics every few
seconds and recreates missing ones.  A service that had to recreate topics in a
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

from infra.topics import ensure_topics
from shared.metrics import ServiceMetrics

log = logging.getLogger("baton.broker")
SYSTEM = "system"
BROKER = "broker"
Hook = Callable[[], Awaitable[Any]]


class BrokerWatch:
    def __init__(self, bootstrap: str, db: AsyncDatabase[dict[str, Any]],
                 metrics: ServiceMetrics, service: str) -> None:
        self.bootstrap = bootstrap
        self.system = db[SYSTEM]
        self.metrics = metrics
        self.service = service
        self.hooks: list[Hook] = []

    async def topics_ensured(self, created: list[str]) -> None:
        """Record what a topic check found; missing topics in a known deployment are a loss."""
        now = datetime.now(UTC)
        if not created:
            await self.system.update_one({"_id": BROKER}, {"$setOnInsert": {"epoch": 0,
                                         "since": now}}, upsert=True)
            return
        known = await self.system.find_one({"_id": BROKER})
        if known is None:
            await self.system.update_one({"_id": BROKER}, {"$setOnInsert": {"epoch": 0,
                                         "since": now}}, upsert=True)
            return
        log.error("the broker lost its topics (%s): recreated them; every service reconciles "
                  "what was in flight from MongoDB", ", ".join(sorted(created)))
        await self.system.update_one(
            {"_id": BROKER},
            {"$inc": {"epoch": 1}, "$set": {"reset_at": now, "reset_by": self.service,
                                            "recreated": sorted(created)}},
        )

    async def __call__(self) -> bool:
        """One check; True when this service reconciled.

        Which epoch each service has reconciled is kept beside the epoch, so a service
        that was down when the loss was noticed reconciles when it comes back.
        """
        await self.topics_ensured(await ensure_topics(self.bootstrap))
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
