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
        defer_clears: bool = False,
    ) -> None:
        self.collection = collection
        self.publisher = publisher
        self.metrics = metrics
        self.revision_field = revision_field
        self.defer_clears = defer_clears
        self.unclear: dict[Any, Any] = {}  # _id -> revision whose outbox went out

    async def flush(self, documents: Iterable[Mapping[str, Any]]) -> int:
        """Publish the outboxes of documents just written, then clear them: one bulk write.

        With ``defer_clears`` the clear waits for :meth:`clear_published` (a periodic job
        that clears every outbox published since its last tick in one write), which keeps a
        round trip off the path of each change.  Until then :meth:`forget_published` tells
        a reader that the outbox it read went out already.
        """
        pending = [d for d in documents if d.get("outbox")]
        if not pending:
            return 0
        await self.publisher.publish(parse_dict(m) for d in pending for m in d["outbox"])
        published = {d["_id"]: d[self.revision_field] for d in pending}
        if self.defer_clears:
            self.unclear.update(published)
        else:
            await self._clear(published)
        return sum(len(d["outbox"]) for d in pending)

    async def clear_published(self) -> int:
        """Clear every outbox published since the last call, in one bulk write."""
        if not self.unclear:
            return 0
        pending, self.unclear = self.unclear, {}
        await self._clear(pending)
        return len(pending)

    def forget_published(self, document: dict[str, Any]) -> dict[str, Any]:
        """Drop from a document just read an outbox this process published already."""
        if document.get("outbox") and self.unclear.get(document["_id"]) == document.get(
                self.revision_field):
            document["outbox"] = []
            document.pop("outbox_at", None)
        return document

    async def _clear(self, published: Mapping[Any, Any]) -> None:
        # Guarded by the revision published: a newer change carried the outbox along (or
        # wrote an empty one) and is not wiped.
        await self.collection.bulk_write(
            [
                UpdateOne(
                    {"_id": doc_id, self.revision_field: revision},
                    {"$set": {"outbox": []}, "$unset": {"outbox_at": ""}},
                )
                for doc_id, revision in published.items()
            ],
            ordered=False,
        )

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
