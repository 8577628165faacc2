"""notifications: what people were told, for external fan-out consumers.

A NotificationSent is published for each notice that reaches at least one person, whatever
became of the sends.  Its event_id derives from the source event, and it is published again
whenever notification handles that event again (a redelivery, a replay): consumers must
drop repeats by event_id.
"""

from __future__ import annotations

from pydantic import Field

from contracts.envelope import Payload
from contracts.topics import NOTIFICATIONS


class NotificationSent(Payload):
    """A notice was sent to the people it reaches; a repeat has the same event_id (drop it)."""

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
