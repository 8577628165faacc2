"""records.changes: what upstream systems send; records.updates: what Baton sends back."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from contracts.envelope import Payload
from contracts.topics import RECORDS_CHANGES, RECORDS_UPDATES

ChangeKind = Literal["created", "updated", "deleted"]


class RecordChanged(Payload):
    """A record was created, updated or deleted upstream.

    ``new`` holds the record after the change (empty on delete), ``old`` before it
    (empty on create).  Upstream producers key the message by ``object_type:record_id``.
    """

    TYPE = "RecordChanged"
    VERSION = 1
    TOPIC = RECORDS_CHANGES

    object_type: str = Field(min_length=1, max_length=100)
    record_id: str = Field(min_length=1, max_length=200)
    change: ChangeKind
    new: dict[str, Any] = Field(default_factory=dict)
    old: dict[str, Any] = Field(default_factory=dict)


class RecordUpdateRequested(Payload):
    """Baton asks the owning system to update a record (the publish_record_update action)."""

    TYPE = "RecordUpdateRequested"
    VERSION = 1
    TOPIC = RECORDS_UPDATES

    object_type: str
    record_id: str
    fields: dict[str, Any]
    step: str
