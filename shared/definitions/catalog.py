"""Published definitions as the coordinator knows them: the definitions topic in memory.

The trigger service owns the ``definitions`` collection and publishes each version on the
compacted ``definitions`` topic (keyed ``name:version``) before it answers the publish.
The catalog is that topic applied; a version not known here makes it catch up with the
topic once (everything published before the miss is then read) before it is refused, so
a run started right after its definition was published is never refused.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from pydantic import ValidationError

from contracts import Envelope
from contracts.events.definitions import DefinitionPublished
from contracts.topics import DEFINITIONS
from shared.definitions.model import Definition
from shared.definitions.store import UnknownDefinition
from shared.projection import TopicProjection
from shared.runtime import Runtime

log = logging.getLogger("baton.definitions")


class Definitions(Protocol):
    """Where a service finds a published version (the store, or this catalog)."""

    async def get(self, name: str, version: int | None = None) -> Definition: ...


class DefinitionCatalog:
    def __init__(self) -> None:
        self._raw: dict[tuple[str, int], dict[str, Any]] = {}
        self._checked: dict[tuple[str, int], Definition] = {}
        self._latest: dict[str, int] = {}
        self.projection: TopicProjection | None = None  # set once the service follows it

    def apply(self, envelope: Envelope) -> None:
        payload = envelope.payload
        if not isinstance(payload, DefinitionPublished):
            raise TypeError(f"{envelope.type} does not belong on the definitions topic")
        key = (payload.name, payload.version)
        # Kept as published and checked when first asked for: a start-up reads them all.
        # (The last one written counts, as compaction keeps it: versions are immutable,
        # unless the owner's collection was lost and the version published anew.)
        self._raw[key] = payload.definition
        self._checked.pop(key, None)
        self._latest[payload.name] = max(self._latest.get(payload.name, 0), payload.version)

    async def get(self, name: str, version: int | None = None) -> Definition:
        found = self._find(name, version)
        if found is None and self.projection is not None:
            await self.projection.catch_up()  # published a moment ago, maybe
            found = self._find(name, version)
        if found is None:
            which = f"version {version} of " if version else ""
            raise UnknownDefinition(f"no published {which}orchestration {name!r}")
        return found

    def _find(self, name: str, version: int | None) -> Definition | None:
        key = (name, version if version is not None else self._latest.get(name, 0))
        if key in self._checked:
            return self._checked[key]
        raw = self._raw.get(key)
        if raw is None:
            return None
        try:
            definition = Definition.model_validate(raw)
        except ValidationError as exc:
            log.error("version %d of %s on the topic is no definition: %s", key[1], name, exc)
            return None
        self._checked[key] = definition
        del self._raw[key]
        return definition


def follow_definitions(runtime: Runtime) -> DefinitionCatalog:
    """The published definitions of a service that reads them from the definitions topic."""
    catalog = DefinitionCatalog()
    catalog.projection = runtime.follow(DEFINITIONS, catalog.apply)
    return catalog
