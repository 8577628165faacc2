"""The definitions this service publishes also go out on the definitions topic.

Each version is stored first, then published (keyed ``name:version``) before the publish
is answered: whoever is told "version 3 is published" can start a run of it at once, and
the coordinator will know it.  A crash between the two is repaired at every start (and
after the broker lost its data) by publishing every stored version again: the topic is
compacted and the messages' ids are derived from the version, so that costs one message
per version and changes nothing the consumers knew.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from contracts import Envelope
from contracts.envelope import derived_id, new_event
from contracts.events.definitions import DefinitionPublished
from shared.definitions.model import Definition
from shared.definitions.store import DefinitionStore
from shared.messaging import Publisher
from shared.times import when

PRODUCER = "trigger"
BATCH = 100


def announcement(name: str, version: int, definition: dict[str, Any], published_by: str,
                 published_at: datetime) -> Envelope:
    payload = DefinitionPublished(name=name, version=version, definition=definition,
                                  published_by=published_by or "unknown",
                                  published_at=published_at)
    return new_event(payload, producer=PRODUCER, key=payload.key, occurred_at=published_at,
                     event_id=derived_id("definition", payload.key))


class AnnouncedDefinitions(DefinitionStore):
    """The trigger's store: a version is published on the topic once it is stored."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]], publisher: Publisher) -> None:
        super().__init__(db)
        self.publisher = publisher

    async def publish(
        self, definition: Definition, *, published_by: str, now: datetime
    ) -> Definition:
        pinned = await super().publish(definition, published_by=published_by, now=now)
        await self.publisher.publish([announcement(
            pinned.name, pinned.version, pinned.model_dump(mode="json"), published_by, now)])
        return pinned

    async def announce_all(self) -> None:
        """Publish every stored version again (at start-up, and after a broker loss)."""
        batch: list[Envelope] = []
        async for doc in self.stored():
            batch.append(announcement(doc["name"], doc["version"], doc["definition"],
                                      doc.get("published_by") or "unknown",
                                      when(doc.get("published_at")) or _EPOCH))
            if len(batch) >= BATCH:
                await self.publisher.publish(batch)
                batch = []
        await self.publisher.publish(batch)


_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
