"""Work item gauges computed from MongoDB: open items, the oldest's age, overdue items.

Any assignment replica may run this job; each computes the global values from the work
item documents, so every replica reports the same numbers and alert rules take ``max``
over replicas (docs/decisions/0006-gauges-from-mongodb.md).

Labels are bounded: ``assignee_kind`` (user, group, queue), ``pool`` (the group or queue
name, "" for items assigned to a person: never a user id) and ``status`` (open, claimed).
One aggregation over the active items' ``<status>:*`` keys (the ``lookup`` index).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry
from pymongo.asynchronous.collection import AsyncCollection

from services.assignment.lookup import with_status
from services.assignment.store import ACTIVE
from shared.gauges import RefreshClock, SnapshotGauge

POOLED_KINDS = ("group", "queue")


class WorkItemGauges:
    def __init__(
        self, items: AsyncCollection[dict[str, Any]], registry: CollectorRegistry, service: str
    ) -> None:
        self.items = items
        labels = ("assignee_kind", "pool", "status")
        self.open = SnapshotGauge(
            "baton_work_items_open",
            "Work items not finished (status open or claimed), from MongoDB", labels, registry,
        )
        self.oldest = SnapshotGauge(
            "baton_work_items_oldest_age_seconds",
            "Seconds since the oldest unfinished work item was opened", labels, registry,
        )
        self.overdue = SnapshotGauge(
            "baton_work_items_overdue",
            "Unfinished work items past their due date", ("assignee_kind", "pool"), registry,
        )
        self.clock = RefreshClock(registry, service)

    async def __call__(self) -> None:
        now = datetime.now(UTC)
        counts: dict[tuple[str, ...], float] = defaultdict(float)
        ages: dict[tuple[str, ...], float] = defaultdict(float)
        late: dict[tuple[str, ...], float] = defaultdict(float)
        async for row in await self.items.aggregate(pipeline(now)):
            key = row["_id"]
            kind, name = str(key.get("kind") or ""), str(key.get("pool") or "")
            labels = (kind, name, str(key["status"]))
            counts[labels] += row["count"]
            first = row.get("oldest")
            if isinstance(first, datetime):
                age = (now - _aware(first)).total_seconds()
                ages[labels] = max(ages[labels], age)
            late[(kind, name)] += row["overdue"]
        self.open.replace(counts)
        self.oldest.replace(ages)
        self.overdue.replace(late)
        self.clock.tick()


def pipeline(now: datetime) -> list[dict[str, Any]]:
    """The active items counted per assignee kind, pool and status, with the oldest's
    creation and how many are overdue at ``now`` (fields the server reads: kept plain)."""
    pool = {"$cond": [{"$in": ["$assignee_kind", list(POOLED_KINDS)]}, "$assignee", ""]}
    overdue = {"$cond": [
        {"$and": [{"$ne": ["$due_at", None]}, {"$lt": ["$due_at", now]}]}, 1, 0,
    ]}
    return [
        {"$match": with_status(ACTIVE)},
        {"$group": {
            "_id": {"kind": "$assignee_kind", "pool": pool, "status": "$status"},
            "count": {"$sum": 1},
            "oldest": {"$min": "$created_at"},
            "overdue": {"$sum": overdue},
        }},
    ]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
