"""Runs in MongoDB: one document per run, written with one bulk write per consumed batch.

The document is the run's state plus what rides with it (DESIGN.md):
- ``revision``: every write is conditional on the revision it read (no lost update);
- ``applied``: ids of the last messages applied (a redelivery is detected, not re-applied);
- ``outbox``: the messages this transition must publish; cleared once they are out;
- ``pending_history``: the history entries saved with the run and not yet in the
  ``run_history`` collection (history.py): written with the run, paged right after, so a
  stop between the two loses nothing; the next save or outbox clear drops them;
- ``next_timer_at`` / ``timer_lease_until``: when the next run timer is due, and who fires it;
- ``active_key``: present while the run is active (running, suspended, error) and unique,
  so one record has one active run of an exclusive orchestration; its sparse index is
  also how the active runs are found (gauges, stats, lists, reconcile).

Three indexes, no more: every index costs the embedded MongoDB CPU for every run written
(decision 14).  Lists and reports that are not on the hot path find runs through the
active-run index or through the history pages.

The coordinator is the only writer of a run, and one partition owns a run, so runs
are cached between batches; the revision filter makes a stale cache harmless.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo import InsertOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from services.stage_coordinator.core.state import Run, RunStatus
from services.stage_coordinator.history import RUN_HISTORY, pages, write_pages
from shared.due import Alarm
from shared.mongo import Index

RUNS = "runs"
FINISHED = (RunStatus.COMPLETED, RunStatus.CANCELED)  # not kept in the cache
APPLIED_KEPT = 200
SHELL_FIELDS = ("_id", "applied", "outbox", "outbox_at", "history", "pending_history",
                "next_timer_at", "timer_lease_until", "active_steps", "active_key")
OPTIONAL_FIELDS = ("outbox_at", "next_timer_at", "active_key", "pending_history")
INDEXES = [
    Index(RUNS, [("next_timer_at", 1)], options={"sparse": True}),
    Index(RUNS, [("outbox_at", 1)], options={"sparse": True}),
    Index(RUNS, [("active_key", 1)], unique=True, options={"sparse": True}),
]
# Every active run has an active_key (a string), so this range seeks the sparse index.
ACTIVE_RUNS = {"active_key": {"$gte": ""}}


class WriteConflict(RuntimeError):
    """Another writer changed a run we had cached; the batch is retried from the store."""


@dataclass
class StoredRun:
    run: Run
    applied: list[str] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    # History entries of transitions not saved yet; saved but not paged yet (the run
    # document's ``pending_history``); and those the last save wrote (for the metrics).
    new_history: list[dict[str, Any]] = field(default_factory=list)
    unpaged_history: list[dict[str, Any]] = field(default_factory=list)
    history_written: list[dict[str, Any]] = field(default_factory=list)
    is_new: bool = False
    timer_due: datetime | None = None  # next_timer_at as stored
    # The revision the store holds: the guard of the next write.  Several transitions
    # of one run in one batch move ``run.revision`` on, but are written at once.
    stored_revision: int | None = None
    # The last dispatch (StepRequested or WorkItemRequested envelope) of each step, kept
    # while the step is active: what the reconcile re-sends if the broker loses it.
    dispatches: dict[str, dict[str, Any]] = field(default_factory=dict)


class RunStore:
    def __init__(self, db: AsyncDatabase[dict[str, Any]], cache_size: int = 20_000,
                 timers: Alarm | None = None) -> None:
        self.runs = db[RUNS]
        self.history = db[RUN_HISTORY]
        self.timers = timers or Alarm()  # woken when a save makes a timer due sooner
        self.cache: OrderedDict[str, StoredRun] = OrderedDict()
        self.cache_size = cache_size
        self.round_trips = 0
        # run id -> (revision whose outbox went out, whether its history is paged too)
        self.unclear: dict[str, tuple[int, bool]] = {}

    async def load(self, run_ids: list[str]) -> dict[str, StoredRun]:
        found = {rid: self.cache[rid] for rid in run_ids if rid in self.cache}
        missing = [rid for rid in run_ids if rid not in found]
        if missing:
            self.round_trips += 1
            async for doc in self.runs.find({"_id": {"$in": missing}}, {"history": 0}):
                found[doc["_id"]] = self._forget_published(from_document(doc))
        return found

    def _forget_published(self, stored: StoredRun) -> StoredRun:
        """A run read back (a finished one left the cache) whose outbox this process
        published and has not cleared yet: not a stop's leftover, so not published again."""
        revision, paged = self.unclear.get(stored.run.id, (None, False))
        if stored.outbox and revision == stored.run.revision:
            stored.outbox = []
            if paged:
                stored.unpaged_history = []
        return stored

    async def save(self, changed: list[StoredRun], now: datetime) -> set[str]:
        """Write every changed run in one round trip; each update guarded by its revision.

        Returns the ids of new runs refused because their record has an active run already
        (the unique ``active_key`` index): those are rejections, not conflicts.
        """
        ops: list[InsertOne[dict[str, Any]] | UpdateOne] = []
        for stored in changed:
            doc = to_document(stored, now)
            unset = {k: "" for k in OPTIONAL_FIELDS if doc.get(k) is None}
            if not stored.is_new and doc.get("next_timer_at") != stored.timer_due:
                # The timers changed (the fired one was applied): release the firer's lease,
                # or the run's next timer would wait for the lease to run out.
                unset["timer_lease_until"] = ""
            for key in unset:
                doc.pop(key, None)
            if stored.is_new:
                ops.append(InsertOne(doc))
                continue
            doc.pop("_id")
            update: dict[str, Any] = {"$set": doc}
            if unset:
                update["$unset"] = unset
            guard = {"_id": stored.run.id, "revision": stored.stored_revision}
            ops.append(UpdateOne(guard, update))
        if not ops:
            return set()
        self.round_trips += 1
        duplicates: set[str] = set()
        try:
            result = await self.runs.bulk_write(ops, ordered=False)
            matched = result.matched_count
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            for error in errors:
                op = ops[error["index"]]
                refused = error.get("code") == 11000 and isinstance(op, InsertOne)
                if refused and _on_active_key(error):
                    duplicates.add(changed[error["index"]].run.id)
            if len(duplicates) != len(errors):
                self.forget(changed)
                raise WriteConflict(f"{len(errors)} run writes failed: {errors[:3]}") from exc
            matched = exc.details.get("nMatched", 0)
        expected = sum(1 for s in changed if not s.is_new)
        if matched != expected:
            self.forget(changed)
            raise WriteConflict(f"{expected - matched} runs changed underneath")
        for stored in changed:
            if stored.run.id in duplicates:
                continue
            # This write replaced the run's outbox (and pending history): a clear still
            # waiting for an older revision would match nothing, and is not sent.
            self.unclear.pop(stored.run.id, None)
            stored.is_new = False
            stored.stored_revision = stored.run.revision
            stored.timer_due = min((t.due_at for t in stored.run.timers), default=None)
            stored.history_written, stored.new_history = stored.new_history, []
            stored.unpaged_history.extend(stored.history_written)
            self.timers.due(stored.timer_due)
            self.remember(stored)
        return duplicates

    async def page_history(self, runs: list[StoredRun]) -> int:
        """Write the saved, unpaged history of these runs to ``run_history``: one round trip.

        After the run save (the run document holds the entries meanwhile): a stop in
        between leaves them in ``pending_history``, which the readers merge and the next
        owner of the run pages again (decision 14).
        """
        unpaged = [s for s in runs if s.unpaged_history]
        if not unpaged:
            return 0
        self.round_trips += 1
        written = await write_pages(self.history, pages(s.unpaged_history for s in unpaged))
        for stored in unpaged:
            stored.unpaged_history = []
        return written

    async def clear_outboxes(self, published: list[StoredRun]) -> None:
        """After a publish: drop the outbox unless a newer transition replaced it already."""
        self.defer_clear(published)
        await self.flush_clears()

    def defer_clear(self, published: list[StoredRun]) -> None:
        """Note that these outboxes went out; :meth:`flush_clears` clears them later.

        Off the hot path: the next transition of a run writes its outbox anew anyway (the
        cached copy's is empty now), and a clear that waits a moment costs nothing but a
        sweep of it, which only comes after ``outbox_at`` is seconds old.
        """
        for stored in published:
            self.unclear[stored.run.id] = (stored.run.revision, not stored.unpaged_history)
            stored.outbox = []

    async def flush_clears(self) -> int:
        """One bulk write for every outbox published since the last flush and not replaced
        by a later save of its run.

        The one place outboxes are cleared (a per-writer watermark may replace it: decision
        17): in a burst, where a run's next input comes seconds later, it costs a write per
        outbox; the last one of each run always.
        """
        if not self.unclear:
            return 0
        pending, self.unclear = self.unclear, {}
        self.round_trips += 1
        await self.runs.bulk_write(
            [UpdateOne({"_id": run_id, "revision": revision},
                       {"$set": {"outbox": []}, "$unset": _cleared(paged)})
             for run_id, (revision, paged) in pending.items()],
            ordered=False,
        )
        return len(pending)

    def remember(self, stored: StoredRun) -> None:
        if stored.run.status in FINISHED:  # nothing more will happen to it, most likely
            self.cache.pop(stored.run.id, None)
            return
        self.cache[stored.run.id] = stored
        self.cache.move_to_end(stored.run.id)
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)

    def forget(self, runs: list[StoredRun]) -> None:
        for stored in runs:
            self.cache.pop(stored.run.id, None)


def _cleared(history_paged: bool) -> dict[str, str]:
    if history_paged:  # in run_history now: the run document needs it no more
        return {"outbox_at": "", "pending_history": ""}
    return {"outbox_at": ""}


def _on_active_key(error: dict[str, Any]) -> bool:
    """A duplicate on the active-per-record index: a refused start.

    A duplicate ``_id`` is not a refusal but a run another writer created: a conflict, so
    the batch is retried from the store (where the StartRun is rejected as a duplicate).
    """
    pattern = error.get("keyPattern")
    if isinstance(pattern, dict):
        return "active_key" in pattern
    return "active_key" in str(error.get("errmsg", ""))


def from_document(doc: dict[str, Any]) -> StoredRun:
    state = {k: v for k, v in doc.items() if k not in SHELL_FIELDS}
    return StoredRun(
        run=Run.model_validate({**state, "id": doc["_id"]}),
        applied=list(doc.get("applied", [])),
        outbox=list(doc.get("outbox", [])),
        unpaged_history=list(doc.get("pending_history", [])),
        timer_due=doc.get("next_timer_at"),
        stored_revision=doc.get("revision"),
        dispatches={a["step"]: a["dispatch"] for a in doc.get("active_steps", [])
                    if a.get("dispatch")},
    )


def to_document(stored: StoredRun, now: datetime) -> dict[str, Any]:
    run = stored.run
    doc = run.model_dump(mode="python", exclude={"id"})
    doc["_id"] = run.id
    doc["applied"] = stored.applied[-APPLIED_KEPT:]
    doc["outbox"] = stored.outbox
    doc["outbox_at"] = now if stored.outbox else None
    doc["next_timer_at"] = min((t.due_at for t in run.timers), default=None)
    doc["pending_history"] = [*stored.unpaged_history, *stored.new_history] or None
    doc["active_steps"] = [
        {"stage": s.stage, "step": s.name, "kind": s.kind, "started_at": s.started_at,
         "dispatch": _dispatch_of(stored, s.name, s.attempt, s.status.value)}
        for s in run.steps.values()
        if s.status.value in ("in_progress", "waiting_retry")
    ]
    doc["active_key"] = active_key(run)
    return doc


def active_key(run: Run) -> str | None:
    """Unique among active runs: the record's key when at most one run per record may be
    active, the run's own id otherwise; absent once the run is finished."""
    if not run.active:
        return None
    if run.exclusive_per_record and run.record_key:
        return f"{run.orchestration}|{run.record_key}"
    return f"run:{run.id}"


DISPATCHES = ("StepRequested", "WorkItemRequested")


def _dispatch_of(stored: StoredRun, step: str, attempt: int, status: str) -> dict[str, Any] | None:
    """The dispatch of the step's current attempt, if it is out there waiting for an outcome."""
    dispatch = stored.dispatches.get(step)
    if status != "in_progress" or dispatch is None:
        return None
    return dispatch if dispatch["payload"].get("attempt") == attempt else None
