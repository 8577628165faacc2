"""Send deliveries through their channels and store each outcome, one write per batch.

A first attempt (a delivery not stored yet) is stored once, with its outcome: one page for
the batch's finished ones, the pending ones apart (decision 23).  A retry needs a lease,
taken by the retry sweep's claim (see :mod:`services.notification.store`), and is followed
by a conditional update through the retry core (one bulk write for a batch), so two
replicas never retry the same delivery at the same time and a late outcome never overwrites
a newer one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from services.notification.channels.base import Channel, ChannelError
from services.notification.core.model import Delivery, contact_for
from services.notification.core.retry import Rejection, RetryPolicy, on_failure, on_success
from services.notification.metrics import NotificationMetrics
from services.notification.store import DeliveryStore

log = logging.getLogger("baton.notification.dispatch")


class Dispatcher:
    def __init__(
        self,
        store: DeliveryStore,
        channels: Mapping[str, Channel],
        policy: RetryPolicy,
        metrics: NotificationMetrics,
        *,
        concurrency: int,
    ) -> None:
        self.store = store
        self.channels = channels
        self.policy = policy
        self.metrics = metrics
        self._slots = asyncio.Semaphore(concurrency)

    async def dispatch(self, ids: Iterable[str]) -> int:
        """Claim, send and record (the retry sweep); returns how many were claimed."""
        return await self.send(await self.store.claim(ids, datetime.now(UTC)))

    async def send(self, claimed: list[Delivery]) -> int:
        """Send deliveries this replica holds the lease of; store every outcome at once.

        Each goes to the address it was planned with (no lookup, on a retry neither).
        """
        if not claimed:
            return 0
        outcomes = await self._attempts(claimed)
        stored = await self.store.record(outcomes)
        if stored < len(outcomes):
            log.warning("%d of %d deliveries were re-claimed before their outcome was stored",
                        len(outcomes) - stored, len(outcomes))
        return len(claimed)

    async def send_new(self, deliveries: list[Delivery]) -> int:
        """First attempts of deliveries not stored yet; stores them with their outcomes.

        A crash before the insert leaves nothing stored: the source event is consumed again
        and the sends are repeated, with the same ids (decision 7).  Returns how many were
        sent or scheduled.
        """
        if not deliveries:
            return 0
        outcomes = await self._attempts(deliveries)
        inserted = await self.store.insert_outcomes([updated for _, updated in outcomes])
        if inserted < len(outcomes):
            log.warning("%d of %d deliveries were stored by another replica first",
                        len(outcomes) - inserted, len(outcomes))
        return len(outcomes)

    async def _attempts(self, deliveries: list[Delivery]) -> list[tuple[Delivery, Delivery]]:
        attempts = await asyncio.gather(*(self._attempt(d) for d in deliveries))
        return [pair for pair in attempts if pair is not None]

    async def _attempt(self, delivery: Delivery) -> tuple[Delivery, Delivery] | None:
        async with self._slots:
            error = await self._send(delivery)
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
        self.metrics.attempted(delivery.channel, outcome)
        if error is not None:
            log.warning("delivery %s via %s: %s (%s, attempt %d)", delivery.id,
                        delivery.channel, error.message, outcome, updated.attempts)
        return delivery, updated

    async def _send(self, delivery: Delivery) -> ChannelError | None:
        channel = self.channels.get(delivery.channel)
        if channel is None:
            return ChannelError(f"channel {delivery.channel!r} is not enabled", retryable=False)
        contact = contact_for(delivery)
        started = time.perf_counter()
        try:
            await channel.send(delivery, contact)
        except ChannelError as exc:
            return exc
        except Exception as exc:  # a bug in a channel must not lose the delivery
            log.exception("channel %s crashed on delivery %s", delivery.channel, delivery.id)
            return ChannelError(f"channel crashed: {exc!r}", retryable=True)
        finally:
            self.metrics.took(delivery.channel, time.perf_counter() - started)
        return None
