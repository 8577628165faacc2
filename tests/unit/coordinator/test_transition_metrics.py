"""A save's transitions, starts and ends are counted once a save for each set of labels:
the totals are those of one increment a run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry

from services.stage_coordinator.core.state import (
    Run,
    RunStatus,
    StageState,
    StageStatus,
    StepState,
    StepStatus,
)
from services.stage_coordinator.metrics import CoordinatorMetrics

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def saved(orchestration: str, *kinds: str, status: str = "completed") -> Any:
    run = Run(id=f"{orchestration}-run", orchestration=orchestration, version=1,
              created_at=T0, updated_at=T0,
              stages={"s": StageState(name="s", status=StageStatus.COMPLETED, started_at=T0,
                                      finished_at=T0 + timedelta(seconds=3))},
              steps={"a": StepState(name="a", stage="s", kind="background",
                                    status=StepStatus.COMPLETED, started_at=T0,
                                    finished_at=T0 + timedelta(seconds=2))})
    entries = [{"kind": kind, "stage": "s", "step": "a", "status": RunStatus(status)}
               for kind in kinds]
    return SimpleNamespace(run=run, history_written=entries)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_counts_and_durations_add_up_over_saves() -> None:
    registry = CollectorRegistry()
    metrics = CoordinatorMetrics(registry)
    metrics.observe_transitions([saved("a", "RunCreated"), saved("a", "StepSucceeded"),
                                 saved("b", "RunCreated", "StageFinished")])
    metrics.observe_transitions([saved("a", "RunStatusChanged"),
                                 saved("b", "RunStatusChanged", status="canceled"),
                                 saved("b", "RunStatusChanged", status="suspended"),
                                 saved("a")])
    assert value(registry, "baton_run_transitions_total", orchestration="a") == 4
    assert value(registry, "baton_run_transitions_total", orchestration="b") == 3
    assert value(registry, "baton_runs_started_total", orchestration="a") == 1
    assert value(registry, "baton_runs_started_total", orchestration="b") == 1
    assert value(registry, "baton_runs_finished_total", orchestration="a",
                 status="completed") == 1
    assert value(registry, "baton_runs_finished_total", orchestration="b",
                 status="canceled") == 1
    assert value(registry, "baton_runs_finished_total", orchestration="b",
                 status="suspended") is None
    assert value(registry, "baton_stage_duration_seconds_sum", orchestration="b",
                 stage="s") == 3
    assert value(registry, "baton_step_duration_seconds_count", orchestration="a", stage="s",
                 step="a", kind="background") == 1
