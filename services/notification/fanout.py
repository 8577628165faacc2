"""The ``kafka`` channel: a NotificationSent on the notifications topic for external fan-out."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka.errors import KafkaError

from contracts.envelope import Envelope
from contracts.events.notifications import NotificationSent
from services.notification.channels.base import ChannelError
from services.notification.core.model import KAFKA, Delivery, UserContact
from shared.messaging import Publisher

PRODUCER = "notification"


class KafkaChannel:
    """Publishes with ``event_id`` = the delivery id, so consumers can drop a re-send."""

    name = KAFKA

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    async def send(self, delivery: Delivery, contact: UserContact | None) -> None:
        try:
            await self.publisher.publish([notification_sent(delivery, datetime.now(UTC))])
        except (KafkaError, TimeoutError, ConnectionError) as exc:
            raise ChannelError(f"publish failed: {exc!r}", retryable=True) from exc


def notification_sent(delivery: Delivery, now: datetime) -> Envelope:
    payload = NotificationSent(
        recipient=delivery.recipient,
        channel=delivery.channel,
        template=delivery.template,
        subject=delivery.subject,
        body=delivery.body,
        source_event_id=delivery.source_event_id,
        source_type=delivery.source_type,
    )
    return Envelope(
        event_id=delivery.id,
        type=payload.TYPE,
        schema_version=payload.VERSION,
        occurred_at=now,
        run_id=delivery.run_id,
        key=None if delivery.run_id else delivery.source_event_id,
        correlation_id=delivery.correlation_id or delivery.source_event_id,
        causation_id=delivery.source_event_id,
        producer=PRODUCER,
        payload=payload,
    )
