"""Coordinator metrics: transitions, stage and step durations, rejections, duplicates."""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase

if TYPE_CHECKING:
    from services.stage_coordinator.store import StoredRun

PAUSED_OR_RUNNING = ("running", "suspended")  # neither is an end of the run
DURATION_BUCKETS = (
    0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400, 86400, 259200, 604800
)


class CoordinatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.transitions = Counter(
            "baton_run_transitions_total", "Run transitions applied", ["orchestration"],
            registry=registry,
        )
        self.runs_finished = Counter(
            "baton_runs_finished_total", "Runs that reached a final or error status",
            ["orchestration", "status"], registry=registry,
        )
        self.runs_started = Counter(
            "baton_runs_started_total", "Runs started", ["orchestration"], registry=registry,
        )
        self.stage_seconds = Histogram(
            "baton_stage_duration_seconds", "Time from entering a stage to finishing it",
            ["orchestration", "stage"], buckets=DURATION_BUCKETS, registry=registry,
        )
        self.step_seconds = Histogram(
            "baton_step_duration_seconds", "Time from starting a step to its outcome",
            ["orchestration", "stage", "step", "kind"], buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.rejections = Counter(
            "baton_command_rejections_total", "Commands and outcomes that did not apply",
            ["type"], registry=registry,
        )
        self.duplicates = Counter(
            "baton_duplicate_messages_total", "Redelivered messages detected by event id",
            registry=registry,
        )
        self._children: dict[tuple[MetricWrapperBase, tuple[str, ...]], Any] = {}

    def _labels(self, metric: MetricWrapperBase, *values: str) -> Any:
        """``metric.labels(*values)``, kept: prometheus_client checks the values and takes a
        lock on every call, and a run's transitions ask about 14 times."""
        key = (metric, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def observe_transitions(self, runs: list[StoredRun]) -> None:
        """Count a save's transitions, starts and ends, and observe its stages' and steps'
        durations.  The counts are added once a save for each set of labels (a counter's
        increment takes a lock, and a save holds up to 50 runs of one orchestration): the
        same totals as one increment a run."""
        counted: collections.Counter[tuple[Any, tuple[str, ...]]] = collections.Counter()
        for stored in runs:
            run = stored.run
            counted[self.transitions, (run.orchestration,)] += 1
            for entry in stored.history_written:
                kind = entry.get("kind")
                if kind == "RunCreated":
                    counted[self.runs_started, (run.orchestration,)] += 1
                elif kind == "RunStatusChanged" and entry["status"] not in PAUSED_OR_RUNNING:
                    counted[self.runs_finished, (run.orchestration, str(entry["status"]))] += 1
                elif kind == "StageFinished":
                    stage = run.stages.get(entry["stage"])
                    if stage and stage.started_at and stage.finished_at:
                        self._labels(self.stage_seconds, run.orchestration, stage.name).observe(
                            (stage.finished_at - stage.started_at).total_seconds()
                        )
                elif kind in ("StepSucceeded", "StepFailed"):
                    step = run.steps.get(entry["step"])
                    if step and step.started_at and step.finished_at:
                        self._labels(
                            self.step_seconds, run.orchestration, step.stage, step.name, step.kind
                        ).observe((step.finished_at - step.started_at).total_seconds())
        for (metric, values), count in counted.items():
            self._labels(metric, *values).inc(count)
