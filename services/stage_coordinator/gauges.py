"""Run gauges computed from MongoDB: active runs, steps in progress, stuck steps.

Any coordinator replica may run this job (``Runtime.every``); each computes the global
values from the run documents, so every replica reports the same numbers and the alert
rules take ``max`` over replicas (docs/decisions/0006-gauges-from-mongodb.md).

A step is *stuck* when it has been in progress (or waiting to retry) longer than its
threshold: the step's ``sla`` when the definition gives one, else the default for its
kind (``BATON_STUCK_AFTER_SECONDS`` for background steps, ``BATON_STUCK_HUMAN_AFTER_SECONDS``
for interactive and approval steps).  A ``wait`` step without an ``sla`` is not stuck
while its wait timer is pending: it counts only once the timer is overdue by more than
the default threshold (the timer did not fire).

Queries: every one reads the active runs only, through the ``active`` key every active run
holds in its multikey ``lookup`` field (``ACTIVE_RUNS``, decision 37; finished runs, the bulk
of the collection, are not read).  The step groups come from one aggregation; only a group
whose oldest step is past its threshold is counted with a second, narrower aggregation.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry
from pymongo.asynchronous.collection import AsyncCollection

from services.stage_coordinator.store import ACTIVE_RUNS
from shared.definitions.catalog import Definitions
from shared.definitions.model import Step
from shared.definitions.store import UnknownDefinition
from shared.gauges import RefreshClock, SnapshotGauge

log = logging.getLogger("baton.coordinator.gauges")
HUMAN_KINDS = frozenset({"interactive", "approval"})
WAIT_ACTION = "wait"
STEP_LABELS = ("orchestration", "stage", "step", "kind")
StepKey = tuple[str, ...]


@dataclass(frozen=True)
class StuckPolicy:
    """The thresholds of steps without an ``sla`` of their own."""

    default: timedelta = timedelta(hours=1)
    human: timedelta = timedelta(days=3)

    def threshold(self, step: Step | None, kind: str) -> timedelta:
        if step is not None and step.sla is not None:
            return step.sla
        return self.human if kind in HUMAN_KINDS else self.default

    def waits_on_timer(self, step: Step | None) -> bool:
        """A wait step without an sla: measured from its wait timer, not from its start."""
        return step is not None and step.action == WAIT_ACTION and step.sla is None


@dataclass(frozen=True)
class StepGroup:
    orchestration: str
    version: int
    stage: str
    step: str
    kind: str
    count: int
    oldest: datetime

    @property
    def key(self) -> StepKey:
        return (self.orchestration, self.stage, self.step, self.kind)


class RunGauges:
    """The periodic job: recompute the gauges and replace their snapshots."""

    def __init__(
        self,
        runs: AsyncCollection[dict[str, Any]],
        definitions: Definitions,
        registry: CollectorRegistry,
        service: str,
        policy: StuckPolicy | None = None,
    ) -> None:
        self.runs = runs
        self.definitions = definitions
        self.policy = policy or StuckPolicy()
        self.active_runs = SnapshotGauge(
            "baton_runs_active",
            "Runs not finished, by the stage they are in and their status (from MongoDB)",
            ("orchestration", "stage", "status"), registry,
        )
        self.in_progress = SnapshotGauge(
            "baton_steps_in_progress",
            "Steps in progress or waiting to retry (from MongoDB)", STEP_LABELS, registry,
        )
        self.stuck = SnapshotGauge(
            "baton_steps_stuck",
            "Steps in progress longer than their sla or the default threshold (from MongoDB)",
            STEP_LABELS, registry,
        )
        self.stuck_oldest = SnapshotGauge(
            "baton_steps_stuck_oldest_age_seconds",
            "Seconds the oldest stuck step has been in progress (0: none stuck)",
            STEP_LABELS, registry,
        )
        self.clock = RefreshClock(registry, service)

    async def __call__(self) -> None:
        now = datetime.now(UTC)
        active = await self._active_runs()
        in_progress: dict[StepKey, float] = defaultdict(float)
        stuck: dict[StepKey, float] = defaultdict(float)
        oldest: dict[StepKey, float] = defaultdict(float)
        for group in await self._step_groups(now):
            key = group.key
            in_progress[key] += group.count
            stuck.setdefault(key, 0.0)
            oldest.setdefault(key, 0.0)
            step = await self._step(group)
            cutoff = now - self.policy.threshold(step, group.kind)
            if group.oldest > cutoff:
                continue  # even the oldest is within its threshold
            count, first = await self._stuck(group, cutoff, self.policy.waits_on_timer(step))
            stuck[key] += count
            if first is not None:
                oldest[key] = max(oldest[key], (now - first).total_seconds())
        self.active_runs.replace(active)
        self.in_progress.replace(in_progress)
        self.stuck.replace(stuck)
        self.stuck_oldest.replace(oldest)
        self.clock.tick()

    async def _active_runs(self) -> dict[tuple[str, ...], float]:
        pipeline: list[dict[str, Any]] = [
            {"$match": ACTIVE_RUNS},
            {"$group": {
                "_id": {"o": "$orchestration", "stage": "$stage", "status": "$status"},
                "count": {"$sum": 1},
            }},
        ]
        found: dict[tuple[str, ...], float] = defaultdict(float)
        async for row in await self.runs.aggregate(pipeline):
            key = row["_id"]
            found[(str(key["o"]), str(key.get("stage") or ""), str(key["status"]))] += row["count"]
        return found

    async def _step_groups(self, now: datetime) -> list[StepGroup]:
        pipeline: list[dict[str, Any]] = [
            {"$match": {**ACTIVE_RUNS, "active_steps.started_at": {"$lte": now}}},
            {"$project": {"orchestration": 1, "version": 1, "active_steps": 1}},
            {"$unwind": "$active_steps"},
            {"$group": {
                "_id": {"o": "$orchestration", "v": "$version", "stage": "$active_steps.stage",
                        "step": "$active_steps.step", "kind": "$active_steps.kind"},
                "count": {"$sum": 1},
                "oldest": {"$min": "$active_steps.started_at"},
            }},
        ]
        groups = []
        async for row in await self.runs.aggregate(pipeline):
            key, first = row["_id"], row.get("oldest")
            if not isinstance(first, datetime):
                continue
            groups.append(StepGroup(
                orchestration=str(key["o"]), version=int(key.get("v") or 0),
                stage=str(key["stage"]), step=str(key["step"]), kind=str(key.get("kind") or ""),
                count=int(row["count"]), oldest=_aware(first),
            ))
        return groups

    async def _step(self, group: StepGroup) -> Step | None:
        try:
            definition = await self.definitions.get(group.orchestration, group.version)
            return definition.step(group.stage, group.step)
        except (UnknownDefinition, StopIteration):
            return None  # a deleted definition, or a step a migration removed: the default

    async def _stuck(
        self, group: StepGroup, cutoff: datetime, waits_on_timer: bool
    ) -> tuple[int, datetime | None]:
        element = {"stage": group.stage, "step": group.step, "started_at": {"$lte": cutoff}}
        match: dict[str, Any] = {
            **ACTIVE_RUNS,
            "active_steps": {"$elemMatch": element},
            "orchestration": group.orchestration,
            "version": group.version,
        }
        if waits_on_timer:  # still waiting for a timer that is not overdue: not stuck
            pending = {"purpose": WAIT_ACTION, "step": group.step, "due_at": {"$gt": cutoff}}
            match["timers"] = {"$not": {"$elemMatch": pending}}
        pipeline: list[dict[str, Any]] = [
            {"$match": match},
            {"$project": {"active_steps": 1}},
            {"$unwind": "$active_steps"},
            {"$match": {f"active_steps.{k}": v for k, v in element.items()}},
            {"$group": {"_id": None, "count": {"$sum": 1},
                        "oldest": {"$min": "$active_steps.started_at"}}},
        ]
        async for row in await self.runs.aggregate(pipeline):
            first = row.get("oldest")
            return int(row["count"]), _aware(first) if isinstance(first, datetime) else None
        return 0, None


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
