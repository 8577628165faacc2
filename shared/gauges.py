"""Gauges computed from MongoDB by a periodic job, the same global value on every replica.

A state gauge (stuck steps, open work items) counted by each replica from what it
happens to handle would be double counted with two replicas and lost with a dead one.
These are computed instead from the documents themselves (an aggregation behind an
index), so every replica reports the same number and dashboards and alert rules take
``max`` over the replicas (docs/decisions/0006-gauges-from-mongodb.md).

:class:`SnapshotGauge` serves the last computed snapshot.  A label set seen before but
absent from the new snapshot reads 0 (the series stays, so a dashboard shows "0 stuck"
rather than "no data"); the label sets are bounded by the definitions and the directory.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

Labels = tuple[str, ...]
MAX_SERIES = 10_000


class SnapshotGauge(Collector):
    """A gauge family whose samples are replaced as a whole by each refresh."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str],
        registry: CollectorRegistry,
        *,
        max_series: int = MAX_SERIES,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = tuple(labels)
        self.max_series = max_series
        self.values: dict[Labels, float] = {}
        registry.register(self)

    def replace(self, values: Mapping[Labels, float]) -> None:
        for key in values:
            if len(key) != len(self.labels):
                raise ValueError(f"{self.name}: {key!r} does not match labels {self.labels}")
        known = {key: 0.0 for key in self.values}
        merged = {**known, **{k: float(v) for k, v in values.items()}}
        if len(merged) > self.max_series:  # forget the zeros first, never a live value
            merged = {**{k: v for k, v in merged.items() if v}, **dict(values)}
        self.values = merged

    def value(self, *labels: str) -> float | None:
        return self.values.get(tuple(labels))

    def describe(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(self.name, self.documentation, labels=self.labels)

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, value in sorted(self.values.items()):
            family.add_metric(list(key), value)
        yield family


class RefreshClock:
    """When the gauges of a service were last computed (stale gauges are an alert)."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.service = service
        self.gauge = Gauge(
            "baton_gauges_refreshed_timestamp_seconds",
            "Unix time of the last successful refresh of the gauges computed from MongoDB",
            ["service"],
            registry=registry,
        )

    def tick(self) -> None:
        self.gauge.labels(self.service).set(time.time())


def age_seconds(oldest: float | None, now: float) -> float:
    return max(0.0, now - oldest) if oldest is not None else 0.0
