"""Turns a batch of work-item and run events into stored deliveries, then sends the new ones.

Per batch: one query for every recipient's contact, one ``insert_many`` of the planned
deliveries (born leased to this replica), then the deliveries that were new are sent right
away (bounded concurrency) and their outcomes stored in one bulk write.
A delivery id derives from (event, recipient, channel), so a redelivered event inserts
nothing and sends nothing: the insert is the dedupe. Sends happen only after the insert, so
a crash in between leaves pending deliveries that the retry sweep picks up.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from contracts import Envelope
from services.notification.core.plan import plan_deliveries, recipients_of
from services.notification.core.templates import template_name
from services.notification.directory import load_contacts
from services.notification.dispatch import Dispatcher
from services.notification.metrics import NotificationMetrics
from services.notification.store import DeliveryStore


class NotificationHandler:
    def __init__(
        self,
        db: AsyncDatabase[dict[str, Any]],
        store: DeliveryStore,
        dispatcher: Dispatcher,
        metrics: NotificationMetrics,
        *,
        operators: Sequence[str],
        enabled: Collection[str],
    ) -> None:
        self.db = db
        self.store = store
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.operators = tuple(operators)
        self.enabled = enabled

    async def __call__(self, envelopes: list[Envelope]) -> None:
        notable = [e for e in envelopes if template_name(e) is not None]
        if not notable:
            return  # claims, releases, stage events...: nothing to tell anyone
        people = [uid for e in notable for uid in recipients_of(e, self.operators)]
        contacts = await load_contacts(self.db, people, self.enabled)
        now = datetime.now(UTC)
        planned = [
            delivery
            for envelope in notable
            for delivery in plan_deliveries(envelope, contacts, now, self.operators)
        ]
        new = await self.store.insert_new(planned, now)
        duplicates = len({d.id for d in planned}) - len(new)
        if duplicates:
            self.metrics.duplicates.inc(duplicates)
        await self.dispatcher.send(new, contacts)
