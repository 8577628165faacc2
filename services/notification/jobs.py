"""The retry sweep any replica may run: send the pending deliveries that are due again.

Due means ``next_attempt_at`` has passed (the back-off after a failed send ended) and no
live lease is held (a lease outlives a sweep that crashed while sending).  First attempts
never come here: the handler sends them before it stores them (decision 15).
"""

from __future__ import annotations

from datetime import datetime

from services.notification.dispatch import Dispatcher
from services.notification.metrics import NotificationMetrics
from services.notification.store import DeliveryStore
from shared.due import Clock, utc_now


class RetrySweeper:
    """Sends what is due; answers when the next retry is due (shared/due.py).

    Woken by the store's alarm when an outcome of this process stores a retry due sooner
    than it planned; a delivery a stopped replica held is retried once its lease ran out,
    found within the loop's longest sleep.
    """

    def __init__(
        self, store: DeliveryStore, dispatcher: Dispatcher, metrics: NotificationMetrics,
        *, batch: int = 200, clock: Clock = utc_now,
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.batch = batch
        self.clock = clock
        self.sent = 0

    async def __call__(self) -> datetime | None:
        now = self.clock()
        due = await self.store.due_ids(now, self.batch)
        self.sent += await self.dispatcher.dispatch(due) if due else 0
        pending = await self.store.count_pending()
        self.metrics.pending.set(pending)
        if len(due) == self.batch:
            return self.clock()  # more are due: go on at once
        return await self.store.next_attempt_at(now) if pending else None
