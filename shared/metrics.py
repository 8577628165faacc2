"""Prometheus metrics every service exposes, on one registry per process.

Label sets are bounded: orchestration, stage, step, kind, topic, service — never a
run id or a user id.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ServiceMetrics:
    """Metrics of the messaging layer shared by all services."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.registry = registry
        self.service = service
        self._consumed: dict[tuple[str, str], Any] = {}
        self._sent: dict[str, Any] = {}
        self._passed_over: dict[str, Any] = {}
        self.dead_letters = Counter(
            "baton_dead_letters_total",
            "Messages sent to the dead-letter topic",
            ["service", "topic", "reason"],
            registry=registry,
        )
        self.handler_seconds = Histogram(
            "baton_handler_seconds",
            "Time to handle one consumed batch (parse, decide, store, publish)",
            ["service", "topic"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.handler_errors = Counter(
            "baton_handler_errors_total",
            "Handler failures (retried; infrastructure errors rewind the batch)",
            ["service", "topic", "kind"],
            registry=registry,
        )
        self.messages = Counter(
            "baton_messages_consumed_total",
            "Messages consumed, by type",
            ["service", "topic", "type"],
            registry=registry,
        )
        self.passed_over = Counter(
            "baton_messages_passed_over_total",
            "Messages passed over unparsed, as changing nothing for this consumer",
            ["service", "topic"],
            registry=registry,
        )
        self.published = Counter(
            "baton_messages_published_total",
            "Messages published, by topic",
            ["service", "topic"],
            registry=registry,
        )
        self.outbox_backlog = Gauge(
            "baton_outbox_backlog",
            "Stored events not yet confirmed published (seen by the last outbox sweep)",
            ["service"],
            registry=registry,
        )
        self.mongo_commands = Counter(
            "baton_mongodb_commands_total",
            "MongoDB commands sent (round trips), by command",
            ["service", "command"],
            registry=registry,
        )
        self.mongo_documents = Counter(
            "baton_mongodb_documents_written_total",
            "Documents MongoDB was asked to insert, update or delete, by collection",
            ["service", "collection"],
            registry=registry,
        )
        self.broker_resets = Counter(
            "baton_broker_resets_total",
            "Times this service reconciled after the broker lost its topics",
            ["service"],
            registry=registry,
        )
        self.store_restarts = Counter(
            "baton_mongodb_restarts_total",
            "Times this service saw MongoDB restarted and reconciled (it may have lost writes)",
            ["service"],
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "baton_consumer_lag",
            "Messages behind the log end, where the broker reports it",
            ["service", "topic"],
            registry=registry,
        )


    def consumed(self, topic: str, kind: str) -> None:
        """One message of ``kind`` consumed from ``topic`` (the labelled child is kept: a
        ``labels()`` lookup per message cost more than the count)."""
        key = (topic, kind)
        child = self._consumed.get(key)
        if child is None:
            child = self._consumed[key] = self.messages.labels(self.service, topic, kind)
        child.inc()

    def passed_over_on(self, topic: str) -> None:
        """One message from ``topic`` passed over by its intake, unparsed (decision 40)."""
        child = self._passed_over.get(topic)
        if child is None:
            child = self._passed_over[topic] = self.passed_over.labels(self.service, topic)
        child.inc()

    def sent(self, topic: str) -> None:
        """One message published to ``topic``."""
        child = self._sent.get(topic)
        if child is None:
            child = self._sent[topic] = self.published.labels(self.service, topic)
        child.inc()
