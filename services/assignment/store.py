"""Work items in MongoDB: one document per item, an aggregate of the spine (shared/spine).

Every change to a work item goes through the spine: the dispatch consumer's batches
(:mod:`services.assignment.handler`), people's actions and the item timers
(:mod:`services.assignment.guide`), all written under the revision read, with their
outbox, in one bulk write per batch or per group of concurrent commands.  This module is
the only code that touches the ``work_items`` collection.

Besides the work item's own fields (:class:`WorkItem`), a document holds the spine's
shell fields (``revision``, ``applied``, ``outbox``/``outbox_at``/``outbox_by``, ``timers`` with the
epoch each was planned under, ``next_timer_at``) and ``correlation_id`` (of the run,
carried into every event about the item).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from contracts import Envelope
from services.assignment.core.timers import Timer
from services.assignment.core.workitem import WorkItem
from shared.messaging import Publisher
from shared.metrics import ServiceMetrics
from shared.mongo import Index
from shared.spine.aggregate import Aggregate, Decided, aggregate_of, document_of
from shared.spine.mongo_store import SYSTEM, MongoAggregateStore, due_query, spine_indexes

WORK_ITEMS = "work_items"
ACTIVE = ("waiting", "open", "claimed")  # not finished: waiting for an assignee, or with one
INDEXES = [
    Index(WORK_ITEMS, [("run_id", 1), ("step", 1)]),
    Index(WORK_ITEMS, [("assignee_kind", 1), ("assignee", 1), ("status", 1), ("due_at", 1)]),
    Index(WORK_ITEMS, [("claimed_by", 1), ("status", 1)]),
    Index(WORK_ITEMS, [("delegated_to", 1), ("status", 1)]),
    Index(WORK_ITEMS, [("status", 1), ("due_at", 1)]),
    *spine_indexes(WORK_ITEMS),
]


def work_item_id(run_id: str, step: str, attempt: int) -> str:
    return f"{run_id}:{step}:{attempt}"


def item_of(doc: dict[str, Any] | None) -> WorkItem | None:
    if doc is None or "status" not in doc:
        return None
    fields = {k: v for k, v in doc.items() if k in WorkItem.model_fields}
    return WorkItem.model_validate({**fields, "id": doc["_id"]})


def item_in(aggregate: Aggregate) -> WorkItem | None:
    """The work item an aggregate holds (None: none yet, or a failed assignment's trace)."""
    if aggregate.state is None:
        return None
    return item_of({**aggregate.state, "_id": aggregate.key})


def state_of(item: WorkItem, correlation_id: str | None) -> dict[str, Any]:
    """The fields the spine stores for ``item`` (its shell fields are the spine's)."""
    state = item.model_dump(mode="python", exclude={"id"})
    state["correlation_id"] = correlation_id
    return state


def pending_timers(kept: Iterable[Mapping[str, Any]], planned: Iterable[Timer],
                   item: WorkItem) -> list[dict[str, Any]]:
    """The timers an item keeps: a finished item has nothing left to remind anyone of."""
    if item.is_finished:
        return []
    return [*map(dict, kept), *({"purpose": t.purpose, "due_at": t.due_at, "epoch": t.epoch,
                                 "overdue": t.overdue} for t in planned)]


def failed_state(*, run_id: str, step: str, attempt: int, error: str,
                 now: datetime) -> dict[str, Any]:
    """No item could be opened (the assignee did not resolve): a trace with no ``status``,
    so no work item; a redelivered request finds the request applied and opens nothing."""
    return {"run_id": run_id, "step": step, "attempt": attempt, "assignment_error": error,
            "created_at": now}


def next_document(
    previous: dict[str, Any] | None,
    item: WorkItem,
    *,
    published: Sequence[Envelope],
    timers: Iterable[Timer] = (),
    fired: Iterable[dict[str, Any]] = (),
    now: datetime,
    correlation_id: str | None = None,
) -> dict[str, Any]:
    """The document the spine writes for ``item`` after ``previous`` (tests build with it)."""
    before = aggregate_of(previous) if previous else Aggregate(item.id)
    fired_keys = {timer_key(t) for t in fired}
    kept = [t for t in before.timers if timer_key(t) not in fired_keys]
    correlation = (before.state or {}).get("correlation_id") or correlation_id
    after = before.after(Decided(state_of(item, correlation), published,
                                 pending_timers(kept, timers, item)))
    return document_of(after, now)


def failed_document(
    previous: dict[str, Any] | None,
    *,
    item_id: str,
    run_id: str,
    step: str,
    attempt: int,
    error: str,
    published: Sequence[Envelope],
    now: datetime,
) -> dict[str, Any]:
    """The document the spine writes when no item could be opened (see :func:`failed_state`)."""
    before = aggregate_of(previous) if previous else Aggregate(item_id)
    state = failed_state(run_id=run_id, step=step, attempt=attempt, error=error, now=now)
    return document_of(before.after(Decided(state, published)), now)


def _by(order: Sequence[tuple[str, int]]) -> Callable[[dict[str, Any], dict[str, Any]], int]:
    """A comparison in MongoDB's sort order for these fields (a missing value sorts first)."""

    def compare(a: dict[str, Any], b: dict[str, Any]) -> int:
        for name, direction in order:
            x, y = a.get(name), b.get(name)
            if x == y:
                continue
            less = x is None if x is None or y is None else x < y
            return -direction if less else direction
        return 0

    return compare


class WorkItemStore:
    def __init__(
        self, db: AsyncDatabase[dict[str, Any]], publisher: Publisher, metrics: ServiceMetrics,
        *, mark_delay: float = 1.0,
    ) -> None:
        self.items = db[WORK_ITEMS]
        self.spine = MongoAggregateStore(self.items, publisher, metrics, system=db[SYSTEM],
                                         mark_delay=mark_delay)

    async def get(self, item_id: str) -> dict[str, Any] | None:
        doc = await self.items.find_one({"_id": item_id})
        return None if doc is None else self.spine.forget_published(doc)

    async def of_runs(self, run_ids: Iterable[str]) -> list[dict[str, Any]]:
        docs = await self.items.find({"run_id": {"$in": list(run_ids)}}).to_list(None)
        return [self.spine.forget_published(doc) for doc in docs]

    async def waiting(self, limit: int) -> list[str]:
        """Items waiting for the directory to name an assignee (the ``(status, due_at)`` index)."""
        docs = await self.items.find(waiting_items(), {"_id": 1}).limit(limit).to_list(None)
        return [doc["_id"] for doc in docs]

    async def find_any(
        self,
        query: dict[str, Any],
        clauses: Sequence[dict[str, Any]],
        projection: dict[str, Any],
        order: Sequence[tuple[str, int]],
        limit: int,
    ) -> list[dict[str, Any]]:
        """Items matching ``query`` and at least one of ``clauses``, in ``order``.

        One query per clause, each served by the index its clause leads, merged here: the
        embedded MongoDB scans every work item for a top-level ``$or`` (see
        :func:`shared.mongo.serving_index`).
        """
        overlap = {key for clause in clauses for key in clause} & set(query)
        if overlap:
            raise ValueError(f"clauses repeat the query's fields {sorted(overlap)}")
        found = await asyncio.gather(*(
            self.items.find({**query, **clause}, projection).sort(list(order)).limit(limit)
            .to_list(None)
            for clause in clauses
        ))
        merged = {doc["_id"]: doc for docs in found for doc in docs}
        return sorted(merged.values(), key=functools.cmp_to_key(_by(order)))[:limit]


def due_timers(now: datetime) -> dict[str, Any]:
    """Items with a reminder or escalation due: the sparse ``next_timer_at`` index.

    Only active items have ``next_timer_at`` (a finished item's document is written
    without it), so no status clause: with one, the embedded MongoDB plans on the
    ``(status, due_at)`` index and reads every open item.  The spine's timer loop sends it.
    """
    return due_query(now)


def waiting_items() -> dict[str, Any]:
    """Items waiting for the directory to name an assignee (the ``(status, due_at)`` index)."""
    return {"status": "waiting"}


def timer_key(timer: Mapping[str, Any]) -> tuple[str, str, int, bool]:
    """What identifies a stored timer (its purpose, time, epoch and kind)."""
    return (timer["purpose"], _aware(timer["due_at"]).isoformat(), timer["epoch"],
            bool(timer.get("overdue")))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
