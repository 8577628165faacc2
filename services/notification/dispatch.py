"""Send claimed deliveries through their channels and record each outcome.

Every send needs a lease (taken at insert, or by a claim, see
:mod:`services.notification.store`) and is followed by a conditional update through the
retry core (one bulk write for a batch), so two replicas never send the same delivery at
the same time and a late outcome never overwrites a newer one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from services.notification.channels.base import Channel, ChannelError
from services.notification.core.model import Delivery
from services.notification.core.plan import DirectoryLookup
from services.notification.core.retry import Rejection, RetryPolicy, on_failure, on_success
from services.notification.directory import load_contacts
from services.notification.metrics import NotificationMetrics
from services.notification.store import DeliveryStore

log = logging.getLogger("baton.notification.dispatch")


class Dispatcher:
    def __init__(
        self,
        store: DeliveryStore,
        db: AsyncDatabase[dict[str, Any]],
        channels: Mapping[str, Channel],
        policy: RetryPolicy,
        metrics: NotificationMetrics,
        *,
        concurrency: int,
        enabled: Collection[str],
    ) -> None:
        self.store = store
        self.db = db
        self.channels = channels
        self.policy = policy
        self.metrics = metrics
        self.enabled = enabled
        self._slots = asyncio.Semaphore(concurrency)

    async def dispatch(self, ids: Iterable[str]) -> int:
        """Claim, send and record (the retry sweep); returns how many were claimed."""
        claimed = await self.store.claim(ids, datetime.now(UTC))
        if not claimed:
            return 0
        people = (d.recipient for d in claimed if d.channel in self.channels)
        return await self.send(claimed, await load_contacts(self.db, people, self.enabled))

    async def send(self, claimed: list[Delivery], contacts: DirectoryLookup) -> int:
        """Send deliveries this replica holds the lease of; store every outcome at once."""
        if not claimed:
            return 0
        attempts = await asyncio.gather(*(self._attempt(d, contacts) for d in claimed))
        outcomes = [pair for pair in attempts if pair is not None]
        stored = await self.store.record(outcomes)
        if stored < len(outcomes):
            log.warning("%d of %d deliveries were re-claimed before their outcome was stored",
                        len(outcomes) - stored, len(outcomes))
        return len(claimed)

    async def _attempt(self, delivery: Delivery,
                       contacts: DirectoryLookup) -> tuple[Delivery, Delivery] | None:
        async with self._slots:
            error = await self._send(delivery, contacts)
        now = datetime.now(UTC)
        if error is None:
            updated = on_success(delivery, now)
        else:
            updated = on_failure(
                delivery, error.message, now, self.policy, retryable=error.retryable
            )
        if isinstance(updated, Rejection):
            log.error("cannot record delivery %s: %s", delivery.id, updated.reason)
            return None
        outcome = {"sent": "sent", "failed": "failed"}.get(updated.status, "retry")
        self.metrics.notifications.labels(delivery.channel, outcome).inc()
        if error is not None:
            log.warning("delivery %s via %s: %s (%s, attempt %d)", delivery.id,
                        delivery.channel, error.message, outcome, updated.attempts)
        return delivery, updated

    async def _send(self, delivery: Delivery, contacts: DirectoryLookup) -> ChannelError | None:
        channel = self.channels.get(delivery.channel)
        if channel is None:
            return ChannelError(f"channel {delivery.channel!r} is not enabled", retryable=False)
        contact = contacts.user(delivery.recipient)
        started = time.perf_counter()
        try:
            await channel.send(delivery, contact)
        except ChannelError as exc:
            return exc
        except Exception as exc:  # a bug in a channel must not lose the delivery
            log.exception("channel %s crashed on delivery %s", delivery.channel, delivery.id)
            return ChannelError(f"channel crashed: {exc!r}", retryable=True)
        finally:
            self.metrics.send_seconds.labels(delivery.channel).observe(
                time.perf_counter() - started
            )
        return None
