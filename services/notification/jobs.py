"""The retry sweep any replica may run: send the pending deliveries that are due again.

Due means ``next_attempt_at`` has passed (a back-off ended, or the handler stored it but
crashed before sending) and no live lease is held (a lease outlives a crashed sender).
"""

from __future__ import annotations

from datetime import UTC, datetime

from services.notification.dispatch import Dispatcher
from services.notification.metrics import NotificationMetrics
from services.notification.store import DeliveryStore


class RetrySweeper:
    def __init__(
        self, store: DeliveryStore, dispatcher: Dispatcher, metrics: NotificationMetrics,
        *, batch: int = 200,
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.batch = batch

    async def __call__(self) -> int:
        due = await self.store.due_ids(datetime.now(UTC), self.batch)
        sent = await self.dispatcher.dispatch(due) if due else 0
        self.metrics.pending.set(await self.store.count_pending())
        return sent
