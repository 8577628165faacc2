"""Work items in MongoDB: one document per item, an aggregate of the spine (shared/spine).

Every change to a work item goes through the spine: the dispatch consumer's batches
(:mod:`services.assignment.handler`), people's actions and the item timers
(:mod:`services.assignment.guide`), all written under the revision read, with their
outbox, in one bulk write per batch or per group of concurrent commands.  This module is
the only code that touches the ``work_items`` collection.

Besides the work item's own fields (:class:`WorkItem`), a document holds the spine's
shell fields (``revision``, ``applied``, ``outbox``/``outbox_at``/``outbox_by``, ``timers`` with the
epoch each was planned under, ``next_timer_at``), ``correlation_id`` (of the run,
carried into every event about the item) and ``lookup``, the keys it is found by
(:mod:`services.assignment.lookup`), written with every state it stores.

One index from the start, on every item write: ``lookup`` (multikey;
docs/decisions/0019-work-items-found-by-one-lookup-field.md).  The outbox sweep finds a
stamped item by its stamp's key in ``lookup`` too (``outbox:<writer>:<bucket>``, written by
the spine: decision 37), and the spine's ``next_timer_at`` index comes with the first item
that has a reminder or an escalation (decision 36).

Only the fields the server reads stay plain (:data:`PLAIN`); the rest of the item (its
history, record, context, form, outputs...) is one packed value, which the embedded
server keeps without decoding it on every write (:data:`PACKING`, decision 32).  Every
read here opens it, so callers see documents as before; documents written before it are
read the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from contracts import Envelope
from services.assignment.core.timers import Timer
from services.assignment.core.workitem import WorkItem
from services.assignment.lookup import LOOKUP, lookup_keys, of_runs, with_status
from shared.messaging import Publisher
from shared.metrics import ServiceMetrics
from shared.mongo import Index, drop_retired
from shared.packed import Packing
from shared.spine.aggregate import Aggregate, Decided, aggregate_of, document_of
from shared.spine.mongo_store import SYSTEM, MongoAggregateStore, due_query, spine_indexes
from shared.spine.written import WrittenCache

log = logging.getLogger("baton.assignment.store")
WORK_ITEMS = "work_items"
ACTIVE = ("waiting", "open", "claimed")  # not finished: waiting for an assignee, or with one
INDEXES = [Index(WORK_ITEMS, [(LOOKUP, 1)]), *spine_indexes(WORK_ITEMS)]
# The indexes ``lookup`` replaced: dropped at start-up where an older version made them.
RETIRED_INDEXES = ("run_id_1_step_1", "assignee_kind_1_assignee_1_status_1_due_at_1",
                   "claimed_by_1_status_1", "delegated_to_1_status_1", "status_1_due_at_1",
                   "delegated_from_1_status_1")
MIGRATED = f"migrated:{WORK_ITEMS}:{LOOKUP}"  # the ``system`` document saying the back-fill ran
BACKFILL_BATCH = 500
BACKFILL_FIELDS = {"run_id": 1, "status": 1, "assignee_kind": 1, "assignee": 1,
                   "claimed_by": 1, "delegated_to": 1, "delegated_from": 1, "revision": 1}


def work_item_id(run_id: str, step: str, attempt: int) -> str:
    return f"{run_id}:{step}:{attempt}"


ITEM_FIELDS = frozenset(WorkItem.model_fields)  # (a class attribute read per key costs)
# What the server reads of a work item, kept plain: the spine's shell fields (but
# ``applied``), ``lookup`` and the clauses queries put beside it (``orchestration``,
# ``assignee_kind``, ``assignee``, ``due_at``), the lists' sorts (``due_at``, ``created_at``,
# ``updated_at``), the gauges' aggregation (``status`` too), the back-fill of ``lookup``
# (:data:`BACKFILL_FIELDS`), and ``run_id``/``step`` for operators looking in a shell.
PLAIN = frozenset({"_id", "revision", "outbox", "outbox_at", "outbox_by", "timers",
                   "next_timer_at", "timer_lease", LOOKUP, "orchestration", "due_at",
                   "created_at", "updated_at", *BACKFILL_FIELDS, "step"})
# Everything else of an item, in one packed value (decision 32).
PACKING = Packing(frozenset({*ITEM_FIELDS, "correlation_id", "applied"} - PLAIN - {"id"}))


def is_active(aggregate: Aggregate) -> bool:
    """Whether an item is still to be acted on (a finished one is not worth keeping)."""
    return (aggregate.state or {}).get("status") in ACTIVE


def item_of(doc: Mapping[str, Any] | None) -> WorkItem | None:
    if doc is None or "status" not in doc:
        return None
    return _item(doc, doc["_id"])


def item_in(aggregate: Aggregate) -> WorkItem | None:
    """The work item an aggregate holds (None: none yet, or a failed assignment's trace)."""
    if aggregate.state is None or "status" not in aggregate.state:
        return None
    return _item(aggregate.state, aggregate.key)


def _item(fields: Mapping[str, Any], item_id: str) -> WorkItem:
    """The item's own fields validated (a stored document holds others beside them)."""
    own = {k: v for k, v in fields.items() if k in ITEM_FIELDS}
    own["id"] = item_id
    return WorkItem.model_validate(own)


def state_of(item: WorkItem, correlation_id: str | None) -> dict[str, Any]:
    """The fields the spine stores for ``item`` (its shell fields are the spine's)."""
    state = dumped(item)
    state["correlation_id"] = correlation_id
    state[LOOKUP] = lookup_keys(state)
    return state


STORED_FIELDS = tuple(name for name in WorkItem.model_fields if name != "id")
MODEL_FIELDS = ("requested_assignee", "escalation")  # the fields holding a model (or None)


def dumped(item: WorkItem) -> dict[str, Any]:
    """``item.model_dump(exclude={"id"})``, read off the validated item: the same dict (a
    test holds them equal) at a third of the CPU, every item save.

    An item's values are plain already but for its models (the requested assignee, the
    escalation, the history's entries), which become dicts; its dicts are shared, not
    copied (nothing changes a validated item's values, nor the state stored).
    """
    values = item.__dict__
    state = {name: values[name] for name in STORED_FIELDS}
    for name in MODEL_FIELDS:
        if state[name] is not None:
            state[name] = state[name].model_dump()
    state["history"] = tuple(dict(entry.__dict__) for entry in item.history)
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
    state = {"run_id": run_id, "step": step, "attempt": attempt, "assignment_error": error,
             "created_at": now}
    return {**state, LOOKUP: lookup_keys(state)}


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


class WorkItemStore:
    def __init__(
        self, db: AsyncDatabase[dict[str, Any]], publisher: Publisher, metrics: ServiceMetrics,
        *, mark_delay: float = 1.0,
    ) -> None:
        self.items = db[WORK_ITEMS]
        self.system = db[SYSTEM]
        self.spine = MongoAggregateStore(self.items, publisher, metrics, system=self.system,
                                         key_field=LOOKUP, mark_delay=mark_delay,
                                         packing=PACKING)
        # The items this process wrote, for the Work Guide's commands (decided without a
        # read; a stale one's write loses, a refusal waits for a fresh read): its saves
        # and the dispatch consumer's go through it.
        self.written = WrittenCache(self.spine, keep=is_active)

    async def get(self, item_id: str) -> dict[str, Any] | None:
        doc = await self.items.find_one({"_id": item_id})
        return None if doc is None else self.spine.forget_published(PACKING.open(doc))

    async def of_runs(self, run_ids: Iterable[str]) -> list[dict[str, Any]]:
        docs = await self.items.find(of_runs(run_ids)).to_list(None)
        return [self.spine.forget_published(PACKING.open(doc)) for doc in docs]

    async def waiting(self, limit: int) -> list[str]:
        """Items waiting for the directory to name an assignee (their ``waiting:*`` key)."""
        docs = await self.items.find(waiting_items(), {"_id": 1}).limit(limit).to_list(None)
        return [doc["_id"] for doc in docs]

    async def find(
        self,
        query: dict[str, Any],
        leaving_out: Iterable[str],
        order: Sequence[tuple[str, int]],
        limit: int,
    ) -> list[dict[str, Any]]:
        """Items matching ``query`` (built on ``lookup``, so one indexed read), in ``order``,
        without the fields ``leaving_out``.

        A query or an order naming a packed field is a mistake the server would not
        report (it would find nothing, or not sort): refused here.
        """
        named = {name.split(".")[0] for name in [*query, *(n for n, _ in order)]}
        if named & PACKING.fields:
            raise ValueError(f"work items cannot be found or sorted by the packed fields "
                             f"{sorted(named & PACKING.fields)}")
        leaving_out = list(leaving_out)
        cursor = self.items.find(query, PACKING.leaving_out(leaving_out) or None)
        docs = await cursor.sort(list(order)).limit(limit).to_list(None)
        return [PACKING.open(doc, leaving_out) for doc in docs]

    async def migrate(self, batch: int = BACKFILL_BATCH) -> int:
        """Bring a collection an older version wrote up to date (idempotent; at start-up).

        Drops the indexes ``lookup`` replaced (each one costs every item write), then, once
        per collection, writes ``lookup`` into the items stored without it, so they are
        found again ("my work", the dispatch consumer's reads).  One pass over those items,
        written in bulk writes of at most ``batch``, each conditional on the revision read:
        an item another writer changed meanwhile got its keys from that writer.  The
        ``system`` document :data:`MIGRATED` records that the pass finished.  Last, the
        items stamped beyond their writers' marks get their stamp's key, and the outbox
        index the sweep no longer needs goes (decision 37).
        """
        await drop_retired(self.items, RETIRED_INDEXES)
        written = await self._backfill_lookup(batch)
        await self.spine.key_old_stamps()
        return written

    async def _backfill_lookup(self, batch: int) -> int:
        if await self.system.find_one({"_id": MIGRATED}) is not None:
            return 0
        written = 0
        pending: list[UpdateOne] = []
        async for doc in self.items.find({LOOKUP: {"$exists": False}}, BACKFILL_FIELDS,
                                         batch_size=batch):
            pending.append(UpdateOne({"_id": doc["_id"], "revision": doc.get("revision")},
                                     {"$set": {LOOKUP: lookup_keys(doc)}}))
            if len(pending) >= batch:
                written += await self._backfill(pending)
                pending = []
        written += await self._backfill(pending)
        await self.system.update_one({"_id": MIGRATED},
                                     {"$set": {"at": datetime.now(UTC), "written": written}},
                                     upsert=True)
        if written:
            log.info("wrote the lookup keys of %d work items stored before them", written)
        return written

    async def _backfill(self, updates: list[UpdateOne]) -> int:
        if not updates:
            return 0
        result = await self.items.bulk_write(updates, ordered=False)
        return result.modified_count


def due_timers(now: datetime) -> dict[str, Any]:
    """Items with a reminder or escalation due: the sparse ``next_timer_at`` index.

    Only active items have ``next_timer_at`` (a finished item's document is written
    without it), so no status clause: with one, the embedded MongoDB may plan on another
    index and read every open item.  The spine's timer loop sends it.
    """
    return due_query(now)


def waiting_items() -> dict[str, Any]:
    """Items waiting for the directory to name an assignee (their ``waiting:*`` key)."""
    return with_status(["waiting"])


def timer_key(timer: Mapping[str, Any]) -> tuple[str, str, int, bool]:
    """What identifies a stored timer (its purpose, time, epoch and kind)."""
    return (timer["purpose"], _aware(timer["due_at"]).isoformat(), timer["epoch"],
            bool(timer.get("overdue")))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
