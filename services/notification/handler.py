"""Turns a batch of work-item and run events into stored deliveries, then sends the new ones.

Per batch: one ``insert_many`` of the planned deliveries (born leased to this replica), then
the deliveries that were new are sent right away (bounded concurrency) and their outcomes
stored in one bulk write.  Whom to reach, and where, comes with the events (work-item
events carry their recipients' contacts) or from the settings (the operators): no lookup.
A delivery id derives from (event, recipient, channel), so a redelivered event inserts
nothing and sends nothing: the insert is the dedupe. Sends happen only after the insert, so
a crash in between leaves pending deliveries that the retry sweep picks up.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime

from contracts import Envelope
from services.notification.core.model import UserContact
from services.notification.core.plan import contact_book, plan_deliveries
from services.notification.core.templates import template_name
from services.notification.dispatch import Dispatcher
from services.notification.metrics import NotificationMetrics
from services.notification.store import DeliveryStore


class NotificationHandler:
    def __init__(
        self,
        store: DeliveryStore,
        dispatcher: Dispatcher,
        metrics: NotificationMetrics,
        *,
        operators: Sequence[UserContact],
        enabled: Collection[str],
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.operators = tuple(operators)
        self.operator_ids = tuple(operator.id for operator in operators)
        self.enabled = enabled

    async def __call__(self, envelopes: list[Envelope]) -> None:
        notable = [e for e in envelopes if template_name(e) is not None]
        if not notable:
            return  # claims, releases, stage events...: nothing to tell anyone
        now = datetime.now(UTC)
        planned = [
            delivery
            for envelope in notable
            for delivery in plan_deliveries(
                envelope, contact_book(envelope, self.operators, self.enabled), now,
                self.operator_ids)
        ]
        new = await self.store.insert_new(planned, now)
        duplicates = len({d.id for d in planned}) - len(new)
        if duplicates:
            self.metrics.duplicates.inc(duplicates)
        await self.dispatcher.send(new)
