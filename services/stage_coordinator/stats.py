"""The bottleneck report: where runs spend their time, computed from run documents.

:func:`stats_report` is a pure function over run documents (as stored: ``stages`` and
``steps`` with ``started_at``/``finished_at``, ``status``, ``stage``).  :func:`load_runs`
reads the documents it needs, bounded: the runs changed inside the window (named by the
run history's pages) and the runs still active (their ``active`` key), each capped at
:data:`MAX_RUNS`.

Per orchestration, per stage and per step:
- ``p50_seconds`` / ``p90_seconds``: durations of the visits that finished inside the
  window (nearest-rank percentiles; ``None`` when none finished);
- ``finished`` and ``throughput_per_hour``: how many finished inside the window;
- ``work_in_progress``: active runs in the stage now / steps in progress now;
- ``waiting_seconds``: their ages added up; ``oldest_seconds``: the oldest's age.
And ``longest_waiting``: the steps in progress the longest (run id, stage, step, age);
``bottleneck``: the stage with the most waiting time now.

A stage or step visited more than once (a decision sent the run back) counts its last
visit: the run document keeps the last one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from services.stage_coordinator.history import runs_changed_since
from services.stage_coordinator.store import ACTIVE_RUNS as ACTIVE_RUN_DOCUMENTS
from services.stage_coordinator.store import unpacked
from shared.times import when

MAX_RUNS = 20_000
CHUNK = 500
ACTIVE_RUNS = ("running", "suspended", "error")
ACTIVE_STEPS = ("in_progress", "waiting_retry")
FINISHED_STEPS = ("completed", "failed")
FINISHED_STAGES = ("completed", "faulted", "discontinued")
# ``state`` holds the stages and steps (packed, decision 27; older documents: the fields).
PROJECTION = {"orchestration": 1, "status": 1, "stage": 1, "stages": 1, "steps": 1, "state": 1,
              "created_at": 1, "updated_at": 1, "finished_at": 1}


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile: the smallest value with at least q of them at or below."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


@dataclass
class _Tally:
    durations: list[float] = field(default_factory=list)
    ages: list[float] = field(default_factory=list)

    def as_dict(self, hours: float) -> dict[str, Any]:
        return {
            "work_in_progress": len(self.ages),
            "waiting_seconds": round(sum(self.ages), 3),
            "oldest_seconds": round(max(self.ages), 3) if self.ages else 0.0,
            "finished": len(self.durations),
            "throughput_per_hour": round(len(self.durations) / hours, 3) if hours else 0.0,
            "p50_seconds": _round(percentile(self.durations, 0.5)),
            "p90_seconds": _round(percentile(self.durations, 0.9)),
        }


@dataclass
class _Orchestration:
    stages: dict[str, _Tally] = field(default_factory=dict)
    steps: dict[tuple[str, str, str], _Tally] = field(default_factory=dict)
    waiting: list[dict[str, Any]] = field(default_factory=list)
    runs: dict[str, int] = field(default_factory=dict)

    def stage(self, name: str) -> _Tally:
        return self.stages.setdefault(name, _Tally())

    def step(self, stage: str, name: str, kind: str) -> _Tally:
        return self.steps.setdefault((stage, name, kind), _Tally())


def stats_report(
    runs: Iterable[Mapping[str, Any]],
    *,
    now: datetime,
    since: datetime,
    top: int = 10,
    truncated: bool = False,
) -> dict[str, Any]:
    """The report over these run documents (each counted once, by ``_id`` or ``id``)."""
    hours = max((now - since).total_seconds(), 0.0) / 3600
    by_orchestration: dict[str, _Orchestration] = {}
    seen: set[str] = set()
    for doc in runs:
        run_id = str(doc.get("_id", doc.get("id", "")))
        if run_id in seen:
            continue
        seen.add(run_id)
        tally = by_orchestration.setdefault(str(doc.get("orchestration", "")), _Orchestration())
        _count_run(tally, doc, run_id, now=now, since=since)

    orchestrations: list[dict[str, Any]] = []
    for name in sorted(by_orchestration):
        tally = by_orchestration[name]
        stages = [{"stage": s, **t.as_dict(hours)} for s, t in tally.stages.items()]
        steps = [{"stage": st, "step": sp, "kind": k, **t.as_dict(hours)}
                 for (st, sp, k), t in tally.steps.items()]
        waiting = sorted(tally.waiting, key=lambda w: -w["age_seconds"])[:top]
        orchestrations.append({
            "orchestration": name,
            "runs": dict(sorted(tally.runs.items())),
            "bottleneck": _bottleneck(name, stages),
            "stages": stages,
            "steps": steps,
            "longest_waiting": waiting,
        })
    candidates = [o["bottleneck"] for o in orchestrations if o["bottleneck"]]
    everything = [w for o in orchestrations for w in o["longest_waiting"]]
    return {
        "generated_at": now.isoformat(),
        "since": since.isoformat(),
        "window_seconds": round((now - since).total_seconds(), 3),
        "runs_considered": len(seen),
        "truncated": truncated,
        "bottleneck": max(candidates, key=_weight, default=None),
        "longest_waiting": sorted(everything, key=lambda w: -w["age_seconds"])[:top],
        "orchestrations": orchestrations,
    }


def _count_run(
    tally: _Orchestration, doc: Mapping[str, Any], run_id: str, *, now: datetime, since: datetime
) -> None:
    status = str(doc.get("status", ""))
    active = status in ACTIVE_RUNS
    if active:  # running, suspended or error now, whenever they started
        tally.runs["active"] = tally.runs.get("active", 0) + 1
        tally.runs[status] = tally.runs.get(status, 0) + 1
    created = when(doc.get("created_at"))
    if created is not None and created >= since:
        tally.runs["started"] = tally.runs.get("started", 0) + 1
    finished = when(doc.get("finished_at"))
    if not active and finished is not None and finished >= since:
        tally.runs[status] = tally.runs.get(status, 0) + 1

    stages: Mapping[str, Any] = doc.get("stages") or {}
    for name, stage in stages.items():
        started, ended = when(stage.get("started_at")), when(stage.get("finished_at"))
        if stage.get("status") in FINISHED_STAGES and started and ended and ended >= since:
            tally.stage(name).durations.append((ended - started).total_seconds())
        elif active and stage.get("status") == "in_progress" and started:
            tally.stage(name).ages.append(max(0.0, (now - started).total_seconds()))
        else:
            tally.stage(name)  # listed, in the definition's order, even when idle

    steps: Mapping[str, Any] = doc.get("steps") or {}
    for name, step in steps.items():
        stage_name, kind = str(step.get("stage", "")), str(step.get("kind", ""))
        started, ended = when(step.get("started_at")), when(step.get("finished_at"))
        entry = tally.step(stage_name, name, kind)
        if step.get("status") in FINISHED_STEPS and started and ended and ended >= since:
            entry.durations.append((ended - started).total_seconds())
        elif active and step.get("status") in ACTIVE_STEPS and started:
            age = max(0.0, (now - started).total_seconds())
            entry.ages.append(age)
            tally.waiting.append({
                "run_id": run_id, "orchestration": doc.get("orchestration"),
                "stage": stage_name, "step": name, "kind": kind, "status": step.get("status"),
                "run_status": status, "started_at": started.isoformat(),
                "age_seconds": round(age, 3),
            })


def _bottleneck(orchestration: str, stages: list[dict[str, Any]]) -> dict[str, Any] | None:
    busy = [s for s in stages if s["work_in_progress"]]
    if not busy:
        return None
    worst = max(busy, key=_weight)
    return {"orchestration": orchestration, "stage": worst["stage"],
            "waiting_seconds": worst["waiting_seconds"],
            "work_in_progress": worst["work_in_progress"],
            "oldest_seconds": worst["oldest_seconds"]}


def _weight(stage: Mapping[str, Any]) -> tuple[float, int]:
    return (float(stage["waiting_seconds"]), int(stage["work_in_progress"]))




def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


async def load_runs(
    runs: AsyncCollection[dict[str, Any]],
    history: AsyncCollection[dict[str, Any]],
    *,
    since: datetime,
    orchestration: str | None = None,
    limit: int = MAX_RUNS,
) -> tuple[list[dict[str, Any]], bool]:
    """The runs the report needs (changed inside the window, or active); and whether capped.

    The changed ones are named by the history pages of the window (their ``_id`` is
    time-ordered), the active ones by their ``active`` key: ``runs`` keeps no index for
    this report (decisions 14 and 37).
    """
    narrow: dict[str, Any] = {"orchestration": orchestration} if orchestration else {}
    recent_ids, truncated = await runs_changed_since(history, since, limit)
    docs: list[dict[str, Any]] = []
    for start in range(0, len(recent_ids), CHUNK):
        chunk = recent_ids[start:start + CHUNK]
        docs.extend(await runs.find({"_id": {"$in": chunk}, **narrow}, PROJECTION).to_list(None))
    cursor = runs.find({**ACTIVE_RUN_DOCUMENTS, **narrow}, PROJECTION)
    active = await cursor.limit(limit + 1).to_list(None)
    truncated = truncated or len(active) > limit
    docs.extend(active[:limit])
    return [unpacked(doc) for doc in docs], truncated
