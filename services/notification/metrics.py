"""Notification metrics, on the process registry next to the shared messaging metrics.

Labels stay bounded: channel and outcome only, never a recipient or a delivery id.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.metrics import LATENCY_BUCKETS


class NotificationMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.notifications = Counter(
            "baton_notifications_total",
            "Delivery attempts by channel and outcome (sent, retry, failed)",
            ["channel", "outcome"],
            registry=registry,
        )
        self.pending = Gauge(
            "baton_notification_pending",
            "Deliveries not yet sent or failed for good (seen by the last retry sweep)",
            registry=registry,
        )
        self.duplicates = Counter(
            "baton_notification_duplicates_total",
            "Planned deliveries already stored (a redelivered event), so not sent again",
            registry=registry,
        )
        self.send_seconds = Histogram(
            "baton_notification_send_seconds",
            "Time one channel took to send one delivery",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        # The labelled children, kept: a labels() lookup for each send cost more than the
        # count and the observation themselves.
        self._attempts: dict[tuple[str, str], Any] = {}
        self._send_seconds: dict[str, Any] = {}

    def attempted(self, channel: str, outcome: str) -> None:
        """One delivery attempt on ``channel`` with ``outcome`` (sent, retry, failed)."""
        child = self._attempts.get((channel, outcome))
        if child is None:
            child = self._attempts[(channel, outcome)] = self.notifications.labels(
                channel, outcome)
        child.inc()

    def took(self, channel: str, seconds: float) -> None:
        """How long one send on ``channel`` took."""
        child = self._send_seconds.get(channel)
        if child is None:
            child = self._send_seconds[channel] = self.send_seconds.labels(channel)
        child.observe(seconds)
