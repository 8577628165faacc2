"""The latest published version of every orchestration, refreshed from MongoDB."""

from __future__ import annotations

import time

from shared.definitions import Definition
from shared.definitions.store import DefinitionStore

REFRESH_SECONDS = 2.0


class Subscriptions:
    def __init__(self, store: DefinitionStore) -> None:
        self.store = store
        self._latest: dict[str, Definition] = {}
        self._loaded_at = 0.0

    async def current(self) -> list[Definition]:
        if time.monotonic() - self._loaded_at > REFRESH_SECONDS:
            await self.refresh()
        return list(self._latest.values())

    async def refresh(self) -> None:
        latest: dict[str, Definition] = {}
        for doc in await self.store.list():
            if doc["name"] not in latest:
                latest[doc["name"]] = await self.store.get(doc["name"], doc["version"])
        self._latest = latest
        self._loaded_at = time.monotonic()

    def published(self, definition: Definition) -> None:
        self._latest[definition.name] = definition
