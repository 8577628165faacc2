"""dlq: what could not be parsed or handled, with the reason and the original bytes."""

from __future__ import annotations

from pydantic import Field

from contracts.envelope import Payload
from contracts.topics import DLQ


class DeadLettered(Payload):
    TYPE = "DeadLettered"
    TOPIC = DLQ

    reason: str = Field(max_length=8000)
    source_topic: str
    source_partition: int
    source_offset: int
    consumer_group: str
    original_key: str | None = None
    original_value_b64: str
    original_headers: dict[str, str] = Field(default_factory=dict)
