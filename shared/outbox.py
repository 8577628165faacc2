"""The transactional outbox for documents that carry their own: publish, then clear.

A service writes a changed document together with the events the change must publish
(``outbox``) and when they were written (``outbox_at``), in one conditional write.  Only
then does it publish them and clear the outbox, guarded by the revision it wrote, so a
newer change (which carried the older outbox along) is never wiped.  A crash between
the write and the clear leaves the outbox in the document; :meth:`Outbox.sweep` finds
such documents by ``outbox_at`` and publishes them again.  Consumers drop the duplicates
by event id, so publishing twice is safe and publishing never is impossible.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from contracts import parse_dict
from shared.messaging import Publisher
from shared.metrics import ServiceMetrics

log = logging.getLogger("baton.outbox")
SWEEP_BATCH = 500


class Outbox:
    def __init__(
        self,
        collection: AsyncCollection[dict[str, Any]],
        publisher: Publisher,
        metrics: ServiceMetrics,
        *,
        revision_field: str = "revision",
    ) -> None:
        self.collection = collection
        self.publisher = publisher
        self.metrics = metrics
        self.revision_field = revision_field

    async def flush(self, documents: Iterable[Mapping[str, Any]]) -> int:
        """Publish the outboxes of documents just written, then clear them: one bulk write."""
        pending = [d for d in documents if d.get("outbox")]
        if not pending:
            return 0
        await self.publisher.publish(parse_dict(m) for d in pending for m in d["outbox"])
        await self.collection.bulk_write(
            [
                UpdateOne(
                    {"_id": d["_id"], self.revision_field: d[self.revision_field]},
                    {"$set": {"outbox": []}, "$unset": {"outbox_at": ""}},
                )
                for d in pending
            ],
            ordered=False,
        )
        return sum(len(d["outbox"]) for d in pending)

    async def sweep(self, older_than: timedelta = timedelta(seconds=5)) -> int:
        """Publish what a crash left behind; returns how many documents were swept."""
        backlog = await self.collection.count_documents({"outbox_at": {"$exists": True}})
        self.metrics.outbox_backlog.labels(self.metrics.service).set(backlog)
        if not backlog:
            return 0
        cutoff = datetime.now(UTC) - older_than
        cursor = self.collection.find(
            {"outbox_at": {"$lte": cutoff}}, {"outbox": 1, self.revision_field: 1}
        ).limit(SWEEP_BATCH)
        documents = await cursor.to_list(None)
        await self.flush(documents)
        if documents:
            log.warning("republished the outboxes of %d documents left by a crash", len(documents))
        return len(documents)
