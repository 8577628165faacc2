"""notifications: delivered notifications, for external fan-out consumers."""

from __future__ import annotations

from pydantic import Field

from contracts.envelope import Payload
from contracts.topics import NOTIFICATIONS


class NotificationSent(Payload):
    TYPE = "NotificationSent"
    TOPIC = NOTIFICATIONS

    recipient: str
    channel: str
    template: str
    subject: str
    body: str
    source_event_id: str
    source_type: str
    tags: dict[str, str] = Field(default_factory=dict)
