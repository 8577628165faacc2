"""The starts the trigger sent lately, kept so they can be sent again.

Every StartRun the trigger publishes (from the API or from a record change) is written
here first, with its envelope.  Should the broker lose its data before the coordinator
read them, the reconcile re-sends the starts of the last ``window``: their ids are
derived, so a start the coordinator did see is a duplicate it drops.  Older entries are
pruned; a run that started long ago needs nothing from here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from contracts import Envelope, parse_dict
from shared.messaging import Publisher
from shared.mongo import Index

log = logging.getLogger("baton.trigger.starts")
STARTS = "starts"
INDEXES = [Index(STARTS, [("at", 1)])]


class StartLog(Publisher):
    """A publisher that keeps each StartRun it publishes (one insert per call)."""

    def __init__(self, inner: Publisher, db: AsyncDatabase[dict[str, Any]],
                 window: timedelta) -> None:
        super().__init__(inner.broker, inner.metrics)
        self.starts = db[STARTS]
        self.window = window

    async def publish(self, envelopes: Iterable[Envelope]) -> None:
        envelopes = list(envelopes)
        kept = [{"_id": e.event_id, "at": datetime.now(UTC), "envelope": e.model_dump(mode="json")}
                for e in envelopes if e.type == "StartRun"]
        if kept:
            try:
                await self.starts.insert_many(kept, ordered=False)
            except BulkWriteError as exc:  # a repeat of a start already kept is fine
                if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                    raise
        await super().publish(envelopes)

    async def resend(self) -> int:
        """After the broker lost its data: send the recent starts again."""
        since = datetime.now(UTC) - self.window
        docs = await self.starts.find({"at": {"$gte": since}}).to_list(None)
        await super().publish(parse_dict(d["envelope"]) for d in docs)
        log.warning("reconciled: re-sent %d starts of the last %s", len(docs), self.window)
        return len(docs)

    async def prune(self) -> int:
        result = await self.starts.delete_many({"at": {"$lt": datetime.now(UTC) - self.window}})
        return result.deleted_count
