"""The fan-out: a NotificationSent on the notifications topic for every notice someone receives.

Nothing is stored for it (decision 15).  Its event id derives from the source event
(:func:`fanout_id`), so each time the source event is handled (a redelivery, a replay) the
same message is published again, and consumers of ``notifications`` drop repeats by event id.
A notice nobody receives (say, a completion whose only recipient did it) publishes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from aiokafka.errors import KafkaError

from contracts.envelope import Envelope
from contracts.events.notifications import NotificationSent
from services.notification.channels.base import ChannelError
from services.notification.core.model import (
    BROADCAST_RECIPIENT,
    KAFKA,
    Delivery,
    UserContact,
    fanout_id,
)
from services.notification.core.plan import Notice
from services.notification.core.templates import Rendered
from shared.messaging import Publisher

PRODUCER = "notification"


class FanOut:
    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    async def publish(self, notices: Iterable[Notice], now: datetime) -> int:
        """Publish the notices that reach someone, in one go; a Kafka error propagates (the
        batch is consumed again: its person deliveries are stored by then, and are not resent).
        """
        messages = [notification_sent(n.envelope, rendered, now) for n in notices
                    if (rendered := n.rendered) is not None]  # None: it reaches nobody
        if messages:
            await self.publisher.publish(messages)
        return len(messages)


def notification_sent(source: Envelope, rendered: Rendered, now: datetime) -> Envelope:
    payload = NotificationSent(
        recipient=BROADCAST_RECIPIENT,
        channel=KAFKA,
        template=rendered.template,
        subject=rendered.subject,
        body=rendered.body,
        source_event_id=source.event_id,
        source_type=source.type,
    )
    return _envelope(payload, fanout_id(source.event_id), now, source.run_id,
                     source.correlation_id)


class KafkaChannel:
    """Publishes a stored ``kafka`` delivery, with ``event_id`` = the delivery id.

    Only for fan-out deliveries an earlier version stored and that are still pending (the
    retry sweep finds them); new fan-outs are published by :class:`FanOut` and not stored.
    """

    name = KAFKA

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    async def send(self, delivery: Delivery, contact: UserContact | None) -> None:
        payload = NotificationSent(
            recipient=delivery.recipient, channel=delivery.channel, template=delivery.template,
            subject=delivery.subject, body=delivery.body,
            source_event_id=delivery.source_event_id, source_type=delivery.source_type,
        )
        message = _envelope(payload, delivery.id, datetime.now(UTC), delivery.run_id,
                            delivery.correlation_id or delivery.source_event_id)
        try:
            await self.publisher.publish([message])
        except (KafkaError, TimeoutError, ConnectionError) as exc:
            raise ChannelError(f"publish failed: {exc!r}", retryable=True) from exc


def _envelope(payload: NotificationSent, event_id: str, now: datetime, run_id: str | None,
              correlation_id: str) -> Envelope:
    return Envelope(
        event_id=event_id,
        type=payload.TYPE,
        schema_version=payload.VERSION,
        occurred_at=now,
        run_id=run_id,
        key=None if run_id else payload.source_event_id,
        correlation_id=correlation_id,
        causation_id=payload.source_event_id,
        producer=PRODUCER,
        payload=payload,
    )
