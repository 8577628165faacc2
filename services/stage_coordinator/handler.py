"""Applies a consumed batch: decide per message, one bulk write, page the history, publish."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import ConsumerRecord

from contracts import Envelope
from contracts.envelope import derived_id, new_event
from contracts.events import commands as cmd
from contracts.events import runs as run_events
from contracts.events.steps import StepCompleted
from contracts.events.workitems import WorkItemCompleted, WorkItemEvent
from contracts.registry import HOLDERS, holders_in
from services.stage_coordinator.core import participants
from services.stage_coordinator.core.decide import Context, decide
from services.stage_coordinator.core.events import fields_of
from services.stage_coordinator.core.state import Run
from services.stage_coordinator.core.transition import Rejection, Transition
from services.stage_coordinator.dispatches import dispatches_of
from services.stage_coordinator.metrics import CoordinatorMetrics
from services.stage_coordinator.store import APPLIED_KEPT, RunStore, StoredRun
from shared.definitions.catalog import Definitions
from shared.definitions.store import UnknownDefinition
from shared.messaging import Publisher
from shared.outgoing import outgoing_all

log = logging.getLogger("baton.coordinator")
PRODUCER = "stage-coordinator"


class CoordinatorHandler:
    def __init__(
        self,
        store: RunStore,
        definitions: Definitions,
        publisher: Publisher,
        metrics: CoordinatorMetrics,
        save_every: int = 50,
    ) -> None:
        self.store = store
        # Runs decided before a part of the batch is handed to the store (decision 29).
        self.save_every = save_every
        self.definitions = definitions
        self.publisher = publisher
        self.metrics = metrics

    async def __call__(self, envelopes: list[Envelope]) -> None:
        """One batch of the coordinator's one consumer (commands, steps.outcomes and
        workitems.events, decision 20): each run loaded and saved once.  Batches come one
        at a time (the run cache needs no lock); the last batch's messages may still be on
        their way while this one is decided, and this one's save waits for them (decision
        26)."""
        by_run: dict[str, list[Envelope]] = defaultdict(list)
        for envelope in envelopes:
            if envelope.run_id:
                by_run[envelope.run_id].append(envelope)
            else:
                log.warning("dropping %s without run_id", envelope.type)
        stored = await self.store.load(list(by_run))
        # What a stop left unpublished (or unpaged) beyond its writer's mark: sent now.
        pending = [s for s in stored.values() if s.outbox or s.unpaged_history]
        if pending:
            await self.store.finish(pending)
        changed: dict[str, StoredRun] = {}
        starts: dict[str, Envelope] = {}  # the StartRun that created each new run
        saving: asyncio.Task[None] | None = None
        try:
            for run_id, messages in by_run.items():
                current = stored.get(run_id)
                for envelope in messages:
                    result = await self._apply(run_id, current, envelope)
                    if result is not None:
                        if current is None:
                            starts[run_id] = envelope
                        current = result
                        changed[run_id] = result
                if len(changed) >= self.save_every:
                    saving = await self._save_after(saving, changed, starts)
                    changed = {}
                elif saving is not None and not saving.done():
                    await asyncio.sleep(0)  # the part in the store goes on as soon as it can
            if changed:
                saving = await self._save_after(saving, changed, starts)
        finally:
            if saving is not None:  # on a failure too: nothing of this batch goes on after
                await saving

    async def _save_after(self, previous: asyncio.Task[None] | None,
                          changed: dict[str, StoredRun],
                          starts: dict[str, Envelope]) -> asyncio.Task[None]:
        """Save these runs once the save before them is written, in a task: the rest of the
        batch is decided while this part is in the store (decision 29).

        A batch's parts are saved one after the other, in the order they were decided, and
        the batch is not done until the last is; a failed part fails the parts after it and
        the batch, which is read again (the parts written drop their messages as repeats).
        """
        async def save() -> None:
            if previous is not None:
                await previous
            # Saved with the runs, then paged (one more round trip) and published.
            refused = await self.store.save(list(changed.values()))
            written = [s for rid, s in changed.items() if rid not in refused]
            if refused:
                await self._reject_starts([changed[rid] for rid in refused], starts)
            self.metrics.observe_transitions(written)

        task = asyncio.create_task(save())
        await asyncio.sleep(0)  # its write is sent before the next part is decided
        return task

    async def _reject_starts(self, refused: list[StoredRun], starts: dict[str, Envelope]) -> None:
        """New runs the unique active-per-record index refused: say so on runs.events."""
        rejections = []
        for stored in refused:
            run, cause = stored.run, starts[stored.run.id]
            reason = (f"record {run.record_key} has an active run of {run.orchestration}"
                      " already (at_most_one_active_per_record)")
            log.info("run %s refused: %s", run.id, reason)
            self.metrics.rejections.labels(cause.type).inc()
            rejections.append(new_event(
                run_events.RunStartRejected(orchestration=run.orchestration,
                                            version=run.version, record_key=run.record_key,
                                            reason=reason),
                producer=PRODUCER, run_id=run.id, cause=cause,
                event_id=derived_id(cause.event_id, "rejected"),
            ))
        await self.publisher.publish(rejections)

    async def _apply(
        self, run_id: str, current: StoredRun | None, envelope: Envelope
    ) -> StoredRun | None:
        if current is not None and envelope.event_id in current.applied:
            self.metrics.duplicates.inc()
            return None
        context = await self._context(run_id, current.run if current else None, envelope)
        if context is None:
            return None
        result = decide(current.run if current else None, envelope.payload, context)
        if isinstance(result, Rejection):
            if isinstance(envelope.payload, WorkItemEvent):
                return None  # the usual case: it names no one new (core/participants.py)
            self.metrics.rejections.labels(envelope.type).inc()
            log.info("rejected %s for run %s: %s", envelope.type, run_id, result.reason)
            return None
        return self._stored(current, result, envelope)

    async def _context(self, run_id: str, run: Run | None, envelope: Envelope) -> Context | None:
        payload = envelope.payload
        try:
            if run is not None:
                definition = await self.definitions.get(run.orchestration, run.version)
            elif isinstance(payload, cmd.StartRun):
                definition = await self.definitions.get(payload.orchestration, payload.version)
            else:
                log.info("%s for unknown run %s ignored", envelope.type, run_id)
                return None
            target = None
            if isinstance(payload, cmd.MigrateRun) and run is not None:
                target = await self.definitions.get(run.orchestration, payload.to_version)
        except UnknownDefinition as exc:
            self.metrics.rejections.labels(envelope.type).inc()
            log.warning("%s for run %s: %s", envelope.type, run_id, exc)
            return None
        # Its fields as they are: a getattr() of one a payload lacks costs pydantic an
        # exception (about 2 % of the coordinator's CPU, asked for every message).
        fields = payload.__dict__
        actor = fields.get("requested_by") or fields.get("completed_by")
        return Context(
            run_id=run_id,
            now=envelope.occurred_at,
            definition=definition,
            actor=actor or "system",
            target_definition=target,
        )

    def _stored(self, current: StoredRun | None, t: Transition, cause: Envelope) -> StoredRun:
        run = t.current  # its revision counts the events applied (the core keeps it)
        sending = [
            new_event(
                payload,
                producer=PRODUCER,
                run_id=run.id,
                cause=cause,
                event_id=derived_id(cause.event_id, index),
            )
            for index, payload in enumerate(t.messages)
        ]
        outbox = outgoing_all(sending)  # encoded once: stored and sent as they are
        # Each entry as numbered() numbers them (the run and the revision it produced), in
        # the event's fields' own dict (fields_of makes a new one) rather than copies of it.
        before = current.run.revision if current else 0
        history = []
        for n, (event, changes) in enumerate(zip(t.events, t.changes, strict=True), start=1):
            entry = fields_of(event)
            entry.update(cause=cause.type, cause_id=cause.event_id, changes=changes,
                         run_id=run.id, revision=before + n)
            history.append(entry)
        return StoredRun(
            run=run,
            # The last APPLIED_KEPT, as the document keeps them: a run cached for long
            # (one that waits on people for days) would otherwise grow the list for ever.
            applied=[*(current.applied[1 - APPLIED_KEPT:] if current else []), cause.event_id],
            outbox=[*(current.outbox if current else []), *outbox],
            new_history=[*(current.new_history if current else []), *history],
            unpaged_history=list(current.unpaged_history) if current else [],
            is_new=current is None or current.is_new,
            timer_due=current.timer_due if current else None,
            stored_revision=current.stored_revision if current else None,
            dispatches={**(current.dispatches if current else {}),
                        **dispatches_of(sending, outbox)},
        )


def from_work_items(envelope: Envelope) -> Envelope | None:
    """A workitems.events message as the coordinator takes it: what the run needs of its
    work items (the consumer's intake for that topic, decision 20).

    - A WorkItemCompleted is the interactive step's outcome (decision 17): it becomes the
      StepCompleted it stands for, with the same event id, so a repeat is dropped as one.
    - The events that give an item to someone say who takes part in the run.
    The rest (claims, comments, reminders) change nothing the run records; the consumer
    does not even parse them (``WORK_ITEM_TYPES``), nor does it dead-letter what it passes
    over here: the topic is assignment's, whose consumers check it.
    """
    if not envelope.run_id or not isinstance(envelope.payload, WORK_ITEM_EVENTS):
        return None
    if isinstance(envelope.payload, WorkItemCompleted):
        return as_outcome(envelope)
    return envelope


WORK_ITEM_EVENTS: tuple[type[WorkItemEvent], ...] = (WorkItemCompleted,
                                                     *participants.HOLDER_EVENTS)
WORK_ITEM_TYPES = frozenset(event.TYPE for event in WORK_ITEM_EVENTS)


HOLDER_TYPES = frozenset(event.TYPE.encode() for event in participants.HOLDER_EVENTS)


def known_holders(cache: Mapping[str, StoredRun]) -> Callable[[ConsumerRecord[Any, Any]], bool]:
    """The intake's test for a workitems.events record the coordinator need not parse: a
    holder event whose ``holders`` header names only participants its run (by the record's
    key) records already, in the run cache (decision 40).

    The handler would reject it (core/participants.py: "names no one new") and write
    nothing.  Anything it cannot tell so from the cache is parsed and decided as before: a
    record without the header (an older producer), of a run not cached (never loaded for
    this), naming someone new.  A cached run older than the store knows no more than the
    store (participants are only ever added): at worst it makes the record parsed.
    """
    def passes_over(record: ConsumerRecord[Any, Any]) -> bool:
        kind = holders = None
        for name, value in record.headers or ():
            if name == "type":
                kind = value
            elif name == HOLDERS:
                holders = value
        if kind not in HOLDER_TYPES or holders is None or not isinstance(record.key, bytes):
            return False
        stored = cache.get(record.key.decode(errors="replace"))
        keys = holders_in(holders)
        if stored is None or keys is None:
            return False
        known = stored.run.participants
        return all(key in known for key in keys)

    return passes_over


def as_outcome(envelope: Envelope) -> Envelope | None:
    """The StepCompleted a WorkItemCompleted stands for; None for a version 2 one (its own
    StepCompleted came on steps.outcomes)."""
    done = envelope.payload
    assert isinstance(done, WorkItemCompleted)
    if done.attempt < 1:
        return None
    outcome = StepCompleted(step=done.step, attempt=done.attempt, outputs=done.outputs,
                            completed_by=done.actor, decision=done.decision, comment=done.comment)
    return envelope.model_copy(update={"type": outcome.TYPE, "schema_version": outcome.VERSION,
                                       "payload": outcome})
