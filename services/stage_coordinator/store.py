"""Runs in MongoDB: one document per run, written with one bulk write per consumed batch.

The document is the run's state plus what rides with it (DESIGN.md):
- ``revision``: every write replaces the run only if it still holds the revision its writer
  read (no lost update; ``shared.mongo.replace_at``, decision 31);
- ``applied``: ids of the last messages applied (a redelivery is detected, not re-applied);
- ``outbox``: the messages this transition must publish, published right after the write,
  kept as the producer sends them (encoded once when decided, shared/outgoing.py); the
  outbox, the pending history and each active step's dispatch are packed, one BSON value
  each (packed.py, decisions 27 and 35);
- ``state``: what no query looks into (stages, steps, record, inputs, vars, retired
  attempts, applied ids), packed in one value; readers open it with :func:`unpacked`;
- ``pending_history``: the history entries saved with the run, paged to ``run_history``
  right after the write (history.py), so a stop between the two loses nothing;
- ``outbox_at`` / ``outbox_by``: the stamp of the save and its writer.  Neither the outbox
  nor the pending history is cleared by a write of its own: the writer's mark says how far
  its saves' outboxes went out and their history was paged, and the run's next save
  overwrites both (docs/decisions/0016-outbox-watermarks.md, :mod:`shared.spine.marks`);
  a finished run keeps its last ones;
- ``lookup``: the keys a run is found by, one multikey field: ``active`` while the run is
  active (running, suspended, error: the gauges, stats, lists, reconcile), and its stamp's
  key ``outbox:<writer>:<bucket>``, which the outbox sweep seeks (decision 37);
- ``next_timer_at`` / ``timer_lease_until``: when the next run timer is due, and who fires it
  (its sparse index is created by the first save of a run with a timer, decision 36);
- ``active_key``: only on an active run of an orchestration that allows one active run per
  record (``<orchestration>|<record>``), unique: the second start for a record is refused
  (its unique index is created by the first save of such a run, decision 43).

One index from the start (``lookup``); the timers' once a run has had a timer, and
``active_key``'s once a run of an orchestration that allows one active run per record has
been saved: every index costs the embedded MongoDB CPU for every run written, even one
without its field, and a unique one more (decisions 14, 36, 37 and 43).  Lists and reports
that are not on the hot path find runs through ``lookup`` or through the history pages.

The coordinator is the only writer of a run, and one partition owns a run, so runs
are cached between batches; the revision guard makes a stale cache harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo import InsertOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from services.stage_coordinator.core.state import STEP_ACTIVE, Run, RunStatus
from services.stage_coordinator.dispatches import Dispatch
from services.stage_coordinator.history import RUN_HISTORY, pages, write_pages
from shared.due import Alarm
from shared.messaging import Publisher
from shared.mongo import Index, IndexOnDemand, drop_retired, replace_at
from shared.outgoing import Outgoing, opened_outbox, packed_outbox
from shared.packed import items_of, opened, opened_all, packed, packed_each, packed_list
from shared.spine.marks import Backlog, Document, OutboxMarks
from shared.spine.mongo_marks import (
    OLD_OUTBOX_INDEX,
    OUTBOX_FIELDS,
    SYSTEM,
    MongoMarks,
    key_old_stamps,
)
from shared.spine.mongo_store import timers_index
from shared.spine.stamp_keys import stamp_key

log = logging.getLogger("baton.coordinator.store")
# Saves whose messages may be on their way at once (each holds its runs' outboxes).
MAX_FINISHING = 8
RUNS = "runs"
LOOKUP = "lookup"  # the multikey field of a run's keys: ``active``, its stamp's
ACTIVE = "active"
FINISHED = (RunStatus.COMPLETED, RunStatus.CANCELED)  # not kept in the cache
APPLIED_KEPT = 200
SHELL_FIELDS = ("_id", "applied", "state", "outbox", "outbox_at", "outbox_by", "history",
                "pending_history", "next_timer_at", "timer_lease_until", "active_steps",
                "active_key", LOOKUP)
OPTIONAL_FIELDS = ("outbox_at", "outbox_by", "next_timer_at", "active_key", "pending_history",
                   LOOKUP)
# What no query looks into, packed in one value (``state``): the embedded MongoDB decodes,
# copies and encodes every field of a document it replaces, and these are most of a run's
# (decision 27).  Queries and projections use the fields left outside.
PACKED_STATE = ("stages", "steps", "record", "inputs", "vars", "retired_attempts", "applied")
# What a run's replacement carries over from the document it replaces: the history of runs
# written before it moved to run_history, and a timer's lease while the timers are as read.
KEPT = ("history",)
KEPT_WITH_LEASE = ("history", "timer_lease_until")
# What the sweep sends again of a run a stop left: its outbox and its unpaged history.
SWEPT_FIELDS = {**OUTBOX_FIELDS, "pending_history": 1}
# Created by earlier versions, no longer used (outboxes are marked, not cleared: decision 16).
RETIRED_INDEXES = ("outbox_at_1",)
INDEXES = [Index(RUNS, [(LOOKUP, 1)], options={"sparse": True})]
# Created by the first save of a run with a timer, not at start-up (decision 36).
TIMERS_INDEX = timers_index(RUNS)
# Created by the first save of a run that holds its record (decision 43): the embedded
# server reads its index catalogue for every document written to a collection with a
# unique index, whether or not the document has the field.
ACTIVE_KEY_INDEX = Index(RUNS, [("active_key", 1)], unique=True, options={"sparse": True})
# Every active run holds the key ``active``: one seek of the multikey index.
ACTIVE_RUNS = {LOOKUP: ACTIVE}
# What found the active runs before decision 37 (every active run had an active_key).
OLD_ACTIVE_RUNS = {"active_key": {"$gte": ""}}
MIGRATION_BATCH = 500


class WriteConflict(RuntimeError):
    """Another writer changed a run we had cached; the batch is retried from the store."""


@dataclass
class StoredRun:
    run: Run
    applied: list[str] = field(default_factory=list)
    outbox: list[Outgoing] = field(default_factory=list)  # as the producer sends them
    # History entries of transitions not saved yet; saved but not paged yet (the run
    # document's ``pending_history``); and those the last save wrote (for the metrics).
    new_history: list[dict[str, Any]] = field(default_factory=list)
    unpaged_history: list[dict[str, Any]] = field(default_factory=list)
    # The unpaged entries packed, as the last save wrote them: the next save and the page
    # take them as they are instead of encoding them again (empty: pack them).
    unpaged_packed: list[bytes] = field(default_factory=list)
    history_written: list[dict[str, Any]] = field(default_factory=list)
    is_new: bool = False
    timer_due: datetime | None = None  # next_timer_at as stored
    # The revision the store holds: the guard of the next write.  Several transitions
    # of one run in one batch move ``run.revision`` on, but are written at once.
    stored_revision: int | None = None
    # The last dispatch (StepRequested or WorkItemRequested) of each step, kept while the
    # step is active: what the reconcile re-sends if the broker loses it.
    dispatches: dict[str, Dispatch] = field(default_factory=dict)


class RunStore:
    def __init__(self, db: AsyncDatabase[dict[str, Any]], publisher: Publisher, *,
                 cache_size: int = 20_000, timers: Alarm | None = None,
                 mark_delay: float = 1.0, sweep_age: timedelta = timedelta(seconds=5),
                 backlog: Backlog | None = None) -> None:
        self.runs = db[RUNS]
        # Shared with the timer firer and the reconcile, which look only once it exists.
        self.timers_index = IndexOnDemand(self.runs, TIMERS_INDEX)
        self.active_key_index = IndexOnDemand(self.runs, ACTIVE_KEY_INDEX)
        self.history = db[RUN_HISTORY]
        self.publisher = publisher
        self.timers = timers or Alarm()  # woken when a save makes a timer due sooner
        self.system = db[SYSTEM]
        self.outboxes = OutboxMarks(MongoMarks(self.runs, self.system, LOOKUP, SWEPT_FIELDS),
                                    self._resend, mark_delay=mark_delay, backlog=backlog,
                                    sweep_age=sweep_age)
        self.cache: OrderedDict[str, StoredRun] = OrderedDict()
        self.cache_size = cache_size
        self.round_trips = 0
        # The saves whose messages and history are on their way, with their runs.
        self._finishing: dict[asyncio.Task[None], frozenset[str]] = {}

    async def migrate(self, batch: int = MIGRATION_BATCH) -> int:
        """At start-up: bring a collection an older version wrote up to date (idempotent).

        Drops what an older version indexed and this one no longer needs; then, while the
        older ``(outbox_by, outbox_at)`` index exists (decision 37), gives every active run
        the ``active`` key (found through ``active_key``, which every active run had) and
        every run stamped beyond its writer's mark its stamp's key, and drops that index.
        How many active runs were keyed.
        """
        await drop_retired(self.runs, RETIRED_INDEXES)
        if OLD_OUTBOX_INDEX not in await self.runs.index_information():
            return 0
        keyed = 0
        cursor = self.runs.find(OLD_ACTIVE_RUNS, {"revision": 1}, batch_size=batch)
        pending: list[UpdateOne] = []
        async for doc in cursor:
            pending.append(UpdateOne({"_id": doc["_id"], "revision": doc.get("revision")},
                                     {"$addToSet": {LOOKUP: ACTIVE}}))
            if len(pending) >= batch:
                keyed += (await self.runs.bulk_write(pending, ordered=False)).modified_count
                pending = []
        if pending:
            keyed += (await self.runs.bulk_write(pending, ordered=False)).modified_count
        await key_old_stamps(self.runs, self.system, LOOKUP)
        if keyed:
            log.info("keyed %d active runs stored before decision 37", keyed)
        return keyed

    async def load(self, run_ids: list[str]) -> dict[str, StoredRun]:
        found = {rid: self.cache[rid] for rid in run_ids if rid in self.cache}
        missing = [rid for rid in run_ids if rid not in found]
        if missing:
            self.round_trips += 1
            docs = await self.runs.find({"_id": {"$in": missing}}, {"history": 0}).to_list(None)
            await self.outboxes.before_load(docs)
            for doc in docs:
                found[doc["_id"]] = from_document(self._without_what_went_out(doc))
        return found

    def _without_what_went_out(self, doc: Document) -> Document:
        """A run read back (a finished one left the cache, or another writer saved it): what
        its save left to do is done when its writer's mark covers it.  Otherwise its outbox
        and history are a stop's leftovers (or another writer's still on their way): the
        caller publishes and pages them again (consumers and readers drop repeats)."""
        if self.outboxes.covers(doc, in_flight=False):
            doc["outbox"] = []
            doc.pop("pending_history", None)
        return doc

    async def save(self, changed: list[StoredRun]) -> set[str]:
        """Write every changed run in one round trip, each update guarded by its revision;
        then, in the background, publish their outboxes and page their history.

        Returns the ids of new runs refused because their record has an active run already
        (the unique ``active_key`` index): those are rejections, not conflicts.  The save is
        stamped (``outbox_at``/``outbox_by``) and settled once its messages and history are
        out: no write clears what went out.

        The next batch is decided while this save's messages go out (decision 26).  A save
        first waits for the messages of the saves before it of the same runs
        (:meth:`_after_saves_of`), so a run's messages keep their order and its document
        keeps what is still on its way; other runs' saves go on meanwhile (decision 29).
        """
        await self._after_saves_of({s.run.id for s in changed})
        stamp = await self.outboxes.stamp() if any(map(_leaves_work, changed)) else None
        try:
            refused = await self._write(changed, stamp)
        except BaseException:
            if stamp is not None:
                self.outboxes.settle(stamp, False)
            raise
        written = [s for s in changed if s.run.id not in refused]
        messages, histories = _hand_over(written)
        task = asyncio.create_task(self._finish(written, messages, histories, stamp))
        task.add_done_callback(_retrieved)
        self._finishing[task] = frozenset(s.run.id for s in written)
        return refused

    async def _after_saves_of(self, run_ids: set[str]) -> None:
        """Wait for the saves still sending messages of these runs (and for the oldest,
        while more than ``MAX_FINISHING`` are in flight).

        A save whose messages or history failed raises here, once, to whichever save comes
        next: its runs, forgotten, are read back with their outbox and history (their
        stamp is not settled, so they are sent again then, or by the sweep), and a batch
        that decided on one of them from the cache meanwhile is read again."""
        done = [t for t in self._finishing if t.done()]
        waiting = [t for t, runs in self._finishing.items()
                   if not t.done() and not runs.isdisjoint(run_ids)]
        if len(self._finishing) - len(done) > MAX_FINISHING:
            waiting.append(next(t for t in self._finishing if not t.done()))
        for task in [*done, *waiting]:
            try:
                await task  # a failed one raises, once
            finally:
                self._finishing.pop(task, None)

    async def finished(self) -> None:
        """Wait until every save's messages are published and its history paged (raising
        the first that failed, once)."""
        tasks, self._finishing = list(self._finishing), {}
        for task in tasks:
            with contextlib.suppress(Exception):
                await task
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def _finish(self, runs: list[StoredRun], messages: list[Outgoing],
                      histories: list[tuple[list[dict[str, Any]], list[bytes]]],
                      stamp: datetime | None) -> None:
        done = False
        try:
            await asyncio.gather(self.publisher.send(messages), self._page(histories))
            done = True
        except Exception:
            log.warning("publishing or paging the last save of %d runs failed; they are "
                        "read back and sent again", len(runs))
            self.forget(runs)
            raise
        finally:
            if stamp is not None:
                self.outboxes.settle(stamp, done)

    async def finish(self, runs: Sequence[StoredRun]) -> None:
        """What a stop (or a failure) left of a save, found on runs read back: publish their
        outboxes and page their history, now, before they are decided on.

        Both at once (one goes to Kafka, the other to MongoDB), the messages handed to the
        producer first.  Cut short again, the outbox still lies beyond its writer's mark,
        and whoever sends it again pages the history with it (decisions 14 and 16); until
        then the readers merge ``pending_history``.
        """
        messages, histories = _hand_over(runs)
        await asyncio.gather(self.publisher.send(messages), self._page(histories))

    async def _write(self, changed: list[StoredRun], stamp: datetime | None) -> set[str]:
        ops: list[InsertOne[dict[str, Any]] | UpdateOne] = []
        history_packed: dict[str, list[bytes]] = {}
        timed = holds_record = False
        fresh = packed_each([entry for stored in changed for entry in stored.new_history])
        start = 0
        for stored in changed:
            end = start + len(stored.new_history)
            pending = history_packed[stored.run.id] = pending_entries(stored, fresh[start:end])
            start = end
            doc = to_document(stored, stamp, self.outboxes.writer, pending)
            for key in OPTIONAL_FIELDS:
                if doc.get(key) is None:
                    doc.pop(key, None)
            timed = timed or "next_timer_at" in doc
            holds_record = holds_record or "active_key" in doc
            if stored.is_new:
                ops.append(InsertOne(doc))
                continue
            # A timer's lease stays while the timers are as read; when they changed (the
            # fired one was applied) it goes, or the next timer would wait for it to run out.
            timers_as_read = doc.get("next_timer_at") == stored.timer_due
            assert stored.stored_revision is not None  # a stored run was read with one
            ops.append(replace_at(doc, stored.stored_revision,
                                  KEPT_WITH_LEASE if timers_as_read else KEPT))
        if not ops:
            return set()
        if timed and not self.timers_index.known:
            await self.timers_index.ensure()  # before the first document it indexes
        if holds_record and not self.active_key_index.known:
            await self.active_key_index.ensure()  # before the first key it must keep unique
        self.round_trips += 1
        duplicates: set[str] = set()
        try:
            result = await self.runs.bulk_write(ops, ordered=False)
            replaced = result.modified_count
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
            replaced = exc.details.get("nModified", 0)
        expected = sum(1 for s in changed if not s.is_new)
        if replaced != expected:
            self.forget(changed)
            raise WriteConflict(f"{expected - replaced} runs changed underneath")
        for stored in changed:
            if stored.run.id in duplicates:
                continue
            stored.is_new = False
            stored.stored_revision = stored.run.revision
            stored.timer_due = min((t.due_at for t in stored.run.timers), default=None)
            stored.history_written, stored.new_history = stored.new_history, []
            stored.unpaged_history.extend(stored.history_written)
            stored.unpaged_packed = history_packed[stored.run.id]
            self.timers.due(stored.timer_due)
            self.remember(stored)
        return duplicates

    async def _page(self, histories: list[tuple[list[dict[str, Any]], list[bytes]]]) -> int:
        """Write saved history entries to ``run_history``: one round trip.

        After the run save (the run document holds the entries meanwhile): a stop in
        between leaves them in ``pending_history``, which the readers merge and the next
        owner of the run, or the sweep, pages again (decision 14).  The run document keeps
        them until its next save, which writes only its own: no write to drop them.
        """
        if not histories:
            return 0
        self.round_trips += 1
        return await write_pages(self.history, pages([entries for entries, _ in histories],
                                                     [done for _, done in histories]))

    async def _resend(self, docs: Sequence[Document]) -> int:
        """What the sweep found left beyond a writer's mark: its history paged, then its
        outbox published (how many messages)."""
        await write_pages(self.history, pages(opened_all(d.get("pending_history"))
                                              for d in docs))
        messages = [m for d in docs for m in opened_outbox(d.get("outbox"))]
        if messages:
            await self.publisher.send(messages)
        return len(messages)

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

    async def forget_all(self) -> None:
        """Empty the run cache (a reconcile: MongoDB may have lost writes the cache holds,
        and a cached run would take a re-sent message for a repeat)."""
        self.cache.clear()


def _hand_over(runs: Sequence[StoredRun]
               ) -> tuple[list[Outgoing], list[tuple[list[dict[str, Any]], list[bytes]]]]:
    """What saved runs leave to do, taken off them: their messages and unpaged history.

    The cached runs start their next save with neither: it is written only once these
    are out (:meth:`RunStore.save` waits), and a failure forgets the runs, so that they
    are read back with what their documents still hold."""
    messages = [m for s in runs for m in s.outbox]
    histories = [(s.unpaged_history, s.unpaged_packed) for s in runs if s.unpaged_history]
    for stored in runs:
        stored.outbox, stored.unpaged_history = [], []
        stored.unpaged_packed = []
    return messages, histories


def _retrieved(task: asyncio.Task[None]) -> None:
    """A failed finish is raised to the next save; if none comes, it is not left unread."""
    if not task.cancelled():
        task.exception()


def _leaves_work(stored: StoredRun) -> bool:
    """Whether a save of this run leaves something to do after the write (so it is stamped)."""
    return bool(stored.outbox or stored.unpaged_history or stored.new_history)


def _on_active_key(error: dict[str, Any]) -> bool:
    """A duplicate on the active-per-record index: a refused start.

    A duplicate ``_id`` is not a refusal but a run another writer created: a conflict, so
    the batch is retried from the store (where the StartRun is rejected as a duplicate).
    """
    pattern = error.get("keyPattern")
    if isinstance(pattern, dict):
        return "active_key" in pattern
    return "active_key" in str(error.get("errmsg", ""))


def unpacked(doc: dict[str, Any]) -> dict[str, Any]:
    """A run document with its packed ``state`` opened into fields, as readers want it (a
    document written before packing holds them as fields already)."""
    if "state" not in doc:
        return doc
    opened_doc = {**doc, **opened(doc["state"])}
    del opened_doc["state"]
    return opened_doc


def from_document(doc: dict[str, Any]) -> StoredRun:
    doc = unpacked(doc)
    state = {k: v for k, v in doc.items() if k not in SHELL_FIELDS}
    return StoredRun(
        run=Run.model_validate({**state, "id": doc["_id"]}),
        applied=list(doc.get("applied", [])),
        outbox=opened_outbox(doc.get("outbox")),
        unpaged_history=opened_all(doc.get("pending_history")),
        unpaged_packed=[v for v in items_of(doc.get("pending_history")) if isinstance(v, bytes)],
        timer_due=doc.get("next_timer_at"),
        stored_revision=doc.get("revision"),
        dispatches={a["step"]: Dispatch.read(a["dispatch"]) for a in doc.get("active_steps", [])
                    if a.get("dispatch")},
    )


def pending_entries(stored: StoredRun, fresh: list[bytes] | None = None) -> list[bytes]:
    """The history entries a save of the run writes into ``pending_history``, each packed
    once: the page takes the same bytes, and the next save those it wrote already.
    ``fresh``: its new entries packed, when the caller packed a save's at once."""
    unpaged = (stored.unpaged_packed if len(stored.unpaged_packed) == len(stored.unpaged_history)
               else packed_each(stored.unpaged_history))
    return [*unpaged, *(packed_each(stored.new_history) if fresh is None else fresh)]


def to_document(stored: StoredRun, stamp: datetime | None = None,
                writer: str | None = None, pending: list[bytes] | None = None
                ) -> dict[str, Any]:
    """The run's document; stamped ``stamp`` by ``writer`` if it leaves work after the write;
    ``pending``: its :func:`pending_entries`, when the caller has them already."""
    run = stored.run
    doc = _fields(run)
    doc["_id"] = run.id
    doc["applied"] = stored.applied[-APPLIED_KEPT:]
    doc["outbox"] = packed_outbox(stored.outbox)
    if pending is None:
        pending = pending_entries(stored)
    doc["pending_history"] = packed_list(pending) if pending else None
    stamped = stamp is not None and (stored.outbox or doc["pending_history"])
    doc["outbox_at"] = stamp if stamped else None
    doc["outbox_by"] = writer if stamped else None
    doc["next_timer_at"] = min((t.due_at for t in run.timers), default=None)
    doc["active_steps"] = [
        {"stage": s.stage, "step": s.name, "kind": s.kind, "started_at": s.started_at,
         "dispatch": _dispatch_of(stored, s.name, s.attempt, s.status)}
        for s in run.steps.values()
        if s.status in STEP_ACTIVE  # the members themselves: an enum's .value is slow
    ]
    doc["active_key"] = active_key(run)
    keys = [ACTIVE] if run.active else []
    if stamped and stamp is not None and writer is not None:
        keys.append(stamp_key(writer, stamp))
    doc[LOOKUP] = keys or None
    doc["state"] = packed({name: doc.pop(name) for name in PACKED_STATE})
    return doc


def _fields(run: Run) -> dict[str, Any]:
    """``run.model_dump(exclude={"id"})`` in a third of its time, for every run saved: the
    same fields in the same order, the states' fields as they are rather than copied.

    The document is only encoded (``packed``, then the bulk write), and nothing changes a
    run's values in place once it is decided (``Run.fork``): sharing them is safe.
    """
    fields = run.__dict__.copy()
    del fields["id"]
    fields["stages"] = {name: stage.__dict__ for name, stage in run.stages.items()}
    fields["steps"] = {name: step.__dict__ for name, step in run.steps.items()}
    fields["timers"] = [timer.__dict__ for timer in run.timers]
    return fields


def active_key(run: Run) -> str | None:
    """Unique among active runs: the record's key when at most one run per record may be
    active; absent otherwise, and once the run is finished (the active runs are found by
    their ``active`` key: decision 37)."""
    if run.active and run.exclusive_per_record and run.record_key:
        return f"{run.orchestration}|{run.record_key}"
    return None


def _dispatch_of(stored: StoredRun, step: str, attempt: int, status: str) -> bytes | None:
    """The dispatch of the step's current attempt, packed, if it is out there waiting for
    an outcome."""
    dispatch = stored.dispatches.get(step)
    if status != "in_progress" or dispatch is None:
        return None
    return dispatch.packed if dispatch.attempt == attempt else None
