"""The bottleneck report as a pure function over run documents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cli.stats import describe_stats, fmt_seconds
from services.stage_coordinator.stats import percentile, stats_report

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(hours=1)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def finished_run(run_id: str, *, stage_seconds: float, step_seconds: float,
                 finished_ago: float = 60, status: str = "completed",
                 orchestration: str = "onboarding") -> dict[str, Any]:
    end = ago(finished_ago)
    return {
        "_id": run_id, "orchestration": orchestration, "status": status, "stage": None,
        "created_at": end - timedelta(seconds=stage_seconds + 5), "updated_at": end,
        "finished_at": end,
        "stages": {"setup": {"name": "setup", "status": "completed",
                             "started_at": end - timedelta(seconds=stage_seconds),
                             "finished_at": end}},
        "steps": {"create_account": {"name": "create_account", "stage": "setup",
                                     "kind": "background", "status": "completed",
                                     "started_at": end - timedelta(seconds=step_seconds),
                                     "finished_at": end}},
    }


def active_run(run_id: str, *, stage: str, step: str, kind: str, waiting: float,
               orchestration: str = "onboarding", status: str = "running",
               step_status: str = "in_progress") -> dict[str, Any]:
    return {
        "_id": run_id, "orchestration": orchestration, "status": status, "stage": stage,
        "created_at": ago(waiting + 3600 * 5), "updated_at": ago(waiting),
        "stages": {
            "setup": {"name": "setup", "status": "completed" if stage != "setup" else
                      "in_progress", "started_at": ago(waiting + 3600 * 5),
                      "finished_at": ago(waiting + 3600 * 4) if stage != "setup" else None},
            stage: {"name": stage, "status": "in_progress", "started_at": ago(waiting)},
        },
        "steps": {step: {"name": step, "stage": stage, "kind": kind, "status": step_status,
                         "started_at": ago(waiting)}},
    }


@pytest.fixture
def report() -> dict[str, Any]:
    runs = [finished_run(f"done-{i}", stage_seconds=10 * i, step_seconds=i) for i in range(1, 11)]
    runs += [
        # finished two hours ago: outside the window
        finished_run("old", stage_seconds=1000, step_seconds=1000, finished_ago=7200),
        finished_run("failed", stage_seconds=1, step_seconds=1, status="error"),
        # three runs waiting in review (1000s in all), one in setup (900s, the oldest alone)
        active_run("rev-1", stage="review", step="approve", kind="approval", waiting=600),
        active_run("rev-2", stage="review", step="approve", kind="approval", waiting=300),
        active_run("rev-3", stage="review", step="approve", kind="approval", waiting=100,
                   status="suspended"),
        active_run("set-1", stage="setup", step="create_account", kind="background",
                   waiting=900),
        # another orchestration: one run waiting to retry for 5000s
        active_run("q-1", stage="sign", step="sign_off", kind="approval", waiting=5000,
                   orchestration="quote", step_status="waiting_retry"),
    ]
    runs.append(dict(runs[-2]))  # read by both queries: counted once
    return stats_report(runs, now=NOW, since=SINCE, top=3)


def by(entries: list[dict[str, Any]], **match: str) -> dict[str, Any]:
    found = [e for e in entries if all(e.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, entries)
    return found[0]


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.9) == 4.0
    assert percentile([float(v) for v in range(1, 101)], 0.9) == 90.0


def test_durations_and_throughput_count_what_finished_inside_the_window(
    report: dict[str, Any],
) -> None:
    onboarding = by(report["orchestrations"], orchestration="onboarding")
    setup = by(onboarding["stages"], stage="setup")
    # 10..100s and the failed run's 1s finished inside the window; the 1000s one did not
    assert setup["finished"] == 11
    assert setup["p50_seconds"] == 50.0  # 1, 10, 20, 30, 40, [50], ...: the 6th of 11
    assert setup["p90_seconds"] == 90.0  # the 10th of 11
    assert setup["throughput_per_hour"] == 11.0
    step = by(onboarding["steps"], stage="setup", step="create_account")
    assert step["finished"] == 11 and step["p50_seconds"] == 5.0 and step["p90_seconds"] == 9.0
    # a run in error is active (it may be retried); completed ones count inside the window
    assert onboarding["runs"] == {"active": 5, "completed": 10, "error": 1, "running": 3,
                                  "started": 11, "suspended": 1}


def test_work_in_progress_waiting_time_and_the_bottleneck(report: dict[str, Any]) -> None:
    onboarding = by(report["orchestrations"], orchestration="onboarding")
    review = by(onboarding["stages"], stage="review")
    assert review["work_in_progress"] == 3
    assert review["waiting_seconds"] == 1000.0 and review["oldest_seconds"] == 600.0
    assert review["finished"] == 0 and review["p50_seconds"] is None
    setup = by(onboarding["stages"], stage="setup")
    assert setup["work_in_progress"] == 1 and setup["waiting_seconds"] == 900.0
    # the most waiting time, not the single oldest run, makes the bottleneck
    assert onboarding["bottleneck"] == {"orchestration": "onboarding", "stage": "review",
                                        "waiting_seconds": 1000.0, "work_in_progress": 3,
                                        "oldest_seconds": 600.0}
    approve = by(onboarding["steps"], stage="review", step="approve")
    assert approve["work_in_progress"] == 3 and approve["kind"] == "approval"
    # across orchestrations: quote's one run has waited 5000s
    assert report["bottleneck"]["orchestration"] == "quote"
    assert report["bottleneck"]["stage"] == "sign"
    assert report["runs_considered"] == 17 and report["truncated"] is False


def test_the_longest_waiting_steps_come_first(report: dict[str, Any]) -> None:
    waiting = report["longest_waiting"]
    assert [(w["run_id"], w["step"], w["age_seconds"]) for w in waiting] == [
        ("q-1", "sign_off", 5000.0), ("set-1", "create_account", 900.0),
        ("rev-1", "approve", 600.0)]
    assert waiting[0]["status"] == "waiting_retry"
    onboarding = by(report["orchestrations"], orchestration="onboarding")
    assert [w["run_id"] for w in onboarding["longest_waiting"]] == ["set-1", "rev-1", "rev-2"]


def test_nothing_running_has_no_bottleneck() -> None:
    report = stats_report([finished_run("a", stage_seconds=3, step_seconds=2)], now=NOW,
                          since=SINCE)
    assert report["bottleneck"] is None
    assert report["orchestrations"][0]["bottleneck"] is None
    assert report["longest_waiting"] == []
    assert "bottleneck: none" in describe_stats(report)


def test_iso_strings_read_like_datetimes() -> None:
    run = finished_run("a", stage_seconds=30, step_seconds=20)
    as_json = {**run, "stages": {"setup": {
        **run["stages"]["setup"],
        "started_at": run["stages"]["setup"]["started_at"].isoformat(),
        "finished_at": run["stages"]["setup"]["finished_at"].isoformat()}}}
    report = stats_report([as_json], now=NOW, since=SINCE)
    assert report["orchestrations"][0]["stages"][0]["p50_seconds"] == 30.0


def test_the_cli_prints_the_bottleneck_and_tables(report: dict[str, Any]) -> None:
    text = describe_stats(report)
    assert "bottleneck: quote / stage sign: 1 run waiting 1h23m in all" in text
    assert "bottleneck: onboarding / stage review: 3 runs waiting 16m40s in all" in text
    assert "q-1" in text and "longest waiting" in text
    assert fmt_seconds(None) == "-" and fmt_seconds(42) == "42s" and fmt_seconds(2.5) == "2.5s"
    assert fmt_seconds(90061) == "1d1h"
