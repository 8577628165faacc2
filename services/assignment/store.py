"""Work items in MongoDB: one document per item, written only under its revision.

Three writers change work items: the dispatch consumer (open, cancel), the Work Guide
API (people's actions) and the timer job (reminders, escalations), possibly in several
replicas each.  Every write is conditional on the revision that was read, so two
writers never both win: the loser reads again and decides again.  The events a change
publishes travel in the same write (the outbox, see :mod:`shared.outbox`).

Besides the work item's own fields (:class:`WorkItem`), a document holds the shell's:
``revision``, ``outbox``/``outbox_at``, ``timers`` (pending reminders and escalations,
each with the epoch it was planned under), ``next_timer_at`` (the soonest, indexed) and
``correlation_id`` (of the run, carried into every event about the item).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import InsertOne, ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from contracts import Envelope
from services.assignment.core.timers import Timer
from services.assignment.core.workitem import WorkItem
from shared.messaging import Publisher
from shared.metrics import ServiceMetrics
from shared.mongo import Index
from shared.outbox import Outbox

WORK_ITEMS = "work_items"
ACTIVE = ("waiting", "open", "claimed")  # not finished: waiting for an assignee, or with one
INDEXES = [
    Index(WORK_ITEMS, [("run_id", 1), ("step", 1)]),
    Index(WORK_ITEMS, [("assignee_kind", 1), ("assignee", 1), ("status", 1), ("due_at", 1)]),
    Index(WORK_ITEMS, [("claimed_by", 1), ("status", 1)]),
    Index(WORK_ITEMS, [("delegated_to", 1), ("status", 1)]),
    Index(WORK_ITEMS, [("status", 1), ("due_at", 1)]),
    Index(WORK_ITEMS, [("outbox_at", 1)], options={"sparse": True}),
    Index(WORK_ITEMS, [("next_timer_at", 1)], options={"sparse": True}),
]
SHELL_FIELDS = ("revision", "outbox", "outbox_at", "timers", "next_timer_at", "correlation_id")


class Conflict(Exception):
    """Another writer changed a work item first: read it again and decide again."""


def work_item_id(run_id: str, step: str, attempt: int) -> str:
    return f"{run_id}:{step}:{attempt}"


def item_of(doc: dict[str, Any] | None) -> WorkItem | None:
    if doc is None or "status" not in doc:
        return None
    fields = {k: v for k, v in doc.items() if k in WorkItem.model_fields}
    return WorkItem.model_validate({**fields, "id": doc["_id"]})


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
    """The document to write for ``item``: the outbox grows, fired timers go, new ones join."""
    previous = previous or {}
    fired_keys = {timer_key(t) for t in fired}
    pending = [t for t in previous.get("timers", []) if timer_key(t) not in fired_keys]
    pending += [
        {"purpose": t.purpose, "due_at": t.due_at, "epoch": t.epoch, "overdue": t.overdue}
        for t in timers
    ]
    if item.is_finished:
        pending = []  # a finished item has nothing left to remind anyone of
    pending.sort(key=lambda t: _aware(t["due_at"]))
    doc = item.model_dump(mode="python", exclude={"id"})
    doc["_id"] = item.id
    doc["revision"] = int(previous.get("revision") or 0) + 1
    doc["outbox"] = [*previous.get("outbox", []), *(e.model_dump(mode="json") for e in published)]
    if doc["outbox"]:
        doc["outbox_at"] = previous.get("outbox_at") or now
    doc["timers"] = pending
    if pending:
        doc["next_timer_at"] = pending[0]["due_at"]
    doc["correlation_id"] = previous.get("correlation_id") or correlation_id
    return doc


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
    """No item could be opened (the assignee did not resolve): keep a trace with the outbox.

    The trace has no ``status``, so it is no work item; a redelivered request finds it,
    decides the same failure with the same event ids, and consumers drop the repeat.
    """
    previous = previous or {}
    outbox = [*previous.get("outbox", []), *(e.model_dump(mode="json") for e in published)]
    doc: dict[str, Any] = {
        "_id": item_id, "run_id": run_id, "step": step, "attempt": attempt,
        "assignment_error": error, "revision": int(previous.get("revision") or 0) + 1,
        "outbox": outbox, "created_at": previous.get("created_at") or now,
    }
    if outbox:
        doc["outbox_at"] = previous.get("outbox_at") or now
    return doc


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
        self, db: AsyncDatabase[dict[str, Any]], publisher: Publisher, metrics: ServiceMetrics
    ) -> None:
        self.items = db[WORK_ITEMS]
        # Published outboxes are cleared by a periodic job, one write per tick (the
        # reads below drop an outbox that went out already).
        self.outbox = Outbox(self.items, publisher, metrics, defer_clears=True)

    async def get(self, item_id: str) -> dict[str, Any] | None:
        doc = await self.items.find_one({"_id": item_id})
        return None if doc is None else self.outbox.forget_published(doc)

    async def of_runs(self, run_ids: Iterable[str]) -> list[dict[str, Any]]:
        docs = await self.items.find({"run_id": {"$in": list(run_ids)}}).to_list(None)
        return [self.outbox.forget_published(doc) for doc in docs]

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

    async def commit(self, changes: Sequence[tuple[dict[str, Any] | None, dict[str, Any]]]) -> None:
        """Write each (read, new) pair under the revision read, then publish the outboxes.

        Raises :class:`Conflict` when any item changed since it was read; the pairs that
        did land keep their outbox, which the next read of them (or the sweep) publishes.
        """
        if not changes:
            return
        ops: list[InsertOne[dict[str, Any]] | ReplaceOne[dict[str, Any]]] = [
            InsertOne(new) if old is None
            else ReplaceOne({"_id": new["_id"], "revision": old.get("revision")}, new)
            for old, new in changes
        ]
        replaces = sum(1 for old, _ in changes if old is not None)
        try:
            result = await self.items.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            raise Conflict(f"{len(exc.details.get('writeErrors', []))} work items changed") from exc
        if result.matched_count != replaces:
            raise Conflict(f"{replaces - result.matched_count} work items changed since read")
        await self.outbox.flush(new for _, new in changes)


def timer_key(timer: dict[str, Any]) -> tuple[str, str, int, bool]:
    """What identifies a stored timer (its purpose, time, epoch and kind)."""
    return (timer["purpose"], _aware(timer["due_at"]).isoformat(), timer["epoch"],
            bool(timer.get("overdue")))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
