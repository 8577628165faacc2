"""definitions: each published version of an orchestration, from the trigger service.

Versions are immutable and keyed ``name:version`` on a compacted topic, so the topic holds
every published version; the coordinator keeps it in memory to run what it is asked to.
"""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, Field

from contracts.envelope import Payload
from contracts.topics import DEFINITIONS


class DefinitionPublished(Payload):
    """Version ``version`` of ``name``: ``definition`` is the checked definition as JSON."""

    TYPE = "DefinitionPublished"
    VERSION = 1
    TOPIC = DEFINITIONS

    name: str = Field(min_length=1, max_length=200)
    version: int = Field(ge=1)
    definition: dict[str, Any]
    published_by: str = Field(min_length=1, max_length=200)
    published_at: AwareDatetime

    @property
    def key(self) -> str:
        return f"{self.name}:{self.version}"
