"""Turns a batch of work-item and run events into sent, stored deliveries and fan-outs.

Per batch (decisions 15, 23): one find in each store of which planned deliveries are stored
already (sent together), the new ones sent right away (bounded concurrency), one insert of
those sent or failed for good as one ``delivery_log`` page (and of the pending ones, with
the time of a retry, into ``deliveries``), then one publish of the fan-outs.
Whom to reach, and where, comes with the events (work-item events carry their recipients'
contacts) or from the settings (the operators): no lookup.

A delivery id derives from (event, recipient, channel), so a redelivered event finds its
deliveries stored and sends nothing again.  A crash after a send and before the insert
stores nothing: the event is consumed again and that send repeated, with the same id.
The fan-out is published for every notice someone receives, redelivered or not; its event
id derives from the source event, and consumers of ``notifications`` drop repeats by it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime

from contracts import Envelope
from services.notification.core.model import UserContact
from services.notification.core.plan import Notice, contact_book, plan_notice
from services.notification.core.templates import template_name
from services.notification.dispatch import Dispatcher
from services.notification.fanout import FanOut
from services.notification.metrics import NotificationMetrics
from services.notification.store import DeliveryStore


class NotificationHandler:
    def __init__(
        self,
        store: DeliveryStore,
        dispatcher: Dispatcher,
        fanout: FanOut,
        metrics: NotificationMetrics,
        *,
        operators: Sequence[UserContact],
        enabled: Collection[str],
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.fanout = fanout
        self.metrics = metrics
        self.operators = tuple(operators)
        self.operator_ids = tuple(operator.id for operator in operators)
        self.enabled = enabled

    async def __call__(self, envelopes: list[Envelope]) -> None:
        notable = [e for e in envelopes if template_name(e) is not None]
        if not notable:
            return  # claims, releases, stage events...: nothing to tell anyone
        now = datetime.now(UTC)
        notices = [n for envelope in notable if (n := self._plan(envelope, now)) is not None]
        planned = {d.id: d for notice in notices for d in notice.deliveries}
        stored = await self.store.stored_ids(planned)
        if stored:
            self.metrics.duplicates.inc(len(stored))
        await self.dispatcher.send_new([d for d in planned.values() if d.id not in stored])
        await self.fanout.publish(notices, now)

    def _plan(self, envelope: Envelope, now: datetime) -> Notice | None:
        book = contact_book(envelope, self.operators, self.enabled)
        return plan_notice(envelope, book, now, self.operator_ids)
