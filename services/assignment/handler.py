"""Opens and withdraws work items from the coordinator's dispatches, on the spine.

Per batch (:func:`shared.spine.process`): one find for the items of the batch's runs,
requests already applied dropped (the inbox), each message decided with the pure core,
one conditional bulk write of the items with their outboxes and timers, publish.  A
write that loses to another writer (the Work Guide, the timer loop, another replica)
raises :class:`~shared.spine.Conflict`; the consumer retries the batch, which reads
again and drops what landed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from contracts import Envelope
from contracts.envelope import derived_id, new_event
from contracts.events.workitems import (
    WorkItemAssignmentFailed,
    WorkItemCancelRequested,
    WorkItemCompleted,
    WorkItemRequested,
)
from services.assignment.core.commands import Cancel, Command, OpenWorkItem
from services.assignment.core.decide import handle
from services.assignment.core.decision import about
from services.assignment.core.directory import Directory
from services.assignment.core.rejection import Rejection
from services.assignment.core.workitem import WorkItem
from services.assignment.directory_store import DirectoryStore
from services.assignment.lookup import of_runs
from services.assignment.store import (
    ACTIVE,
    WorkItemStore,
    failed_state,
    item_in,
    pending_timers,
    state_of,
    work_item_id,
)
from shared.spine import Aggregate, Decided, commit, plan

log = logging.getLogger("baton.assignment")
PRODUCER = "assignment"


class DispatchHandler:
    def __init__(self, store: WorkItemStore, directory: DirectoryStore) -> None:
        self.store = store
        self.directory = directory

    async def __call__(self, envelopes: list[Envelope]) -> None:
        decider = Dispatches(await self.directory.current())
        loaded = await self.store.spine.load_where(decider.select(envelopes))
        decided = plan(loaded, envelopes, decider)
        if decider.failed:  # perhaps an assignee another replica just added: a fresh read
            decider = Dispatches(await self.directory.current(fresh=True))
            decided = plan(loaded, envelopes, decider)
        await commit(self.store.written, decided)  # the Work Guide decides on what it saved


class Dispatches:
    """The dispatch consumer's side of :class:`shared.spine.BatchDecider`."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.failed = False  # whether an assignee did not resolve (worth a fresh directory)

    def select(self, batch: Sequence[Envelope]) -> dict[str, Any]:
        """Every item of the batch's runs (their ``run:`` keys), finished or not."""
        return of_runs(sorted({e.run_id for e in batch if e.run_id}))

    def route(self, message: Envelope, aggregates: Mapping[str, Aggregate]) -> str | None:
        payload, run_id = message.payload, message.run_id or ""
        if isinstance(payload, WorkItemRequested):
            return work_item_id(run_id, payload.step, payload.attempt)
        if isinstance(payload, WorkItemCancelRequested):
            # The run withdraws a step it still waits for: its newest item, open or (when
            # the answer crossed the cancel and will not be used) completed.
            of_step = [a for a in aggregates.values() if (a.state or {}).get("run_id") == run_id
                       and (a.state or {}).get("step") == payload.step]
            newest = max(of_step, key=lambda a: (a.state or {}).get("attempt", 0), default=None)
            if newest is None or (newest.state or {}).get("status") not in (*ACTIVE, "completed"):
                return None
            return newest.key
        return None

    def decide(self, aggregate: Aggregate, message: Envelope) -> Decided:
        command = self._command(aggregate, message)
        current = item_in(aggregate)
        updated, decision = handle(current, command, message.occurred_at, self.directory)
        if isinstance(decision, Rejection):
            log.info("%s on %s refused: %s", message.type, aggregate.key, decision.reason)
            return Decided()
        if not decision.events:
            return Decided(answers=self.repeat(aggregate, message))
        published = [new_event(p, producer=PRODUCER, cause=message,
                               event_id=derived_id(message.event_id, i))
                     for i, p in enumerate(decision.published)]
        if updated is None or updated.status == "waiting":
            self.failed = True
        if updated is None:
            failure = next(e for e in decision.events if isinstance(e, WorkItemAssignmentFailed))
            payload = message.payload
            assert isinstance(payload, WorkItemRequested)
            state = failed_state(run_id=message.run_id or "", step=payload.step,
                                 attempt=payload.attempt, error=failure.error,
                                 now=message.occurred_at)
            return Decided(state=state, publish=published)
        correlation = (aggregate.state or {}).get("correlation_id") or message.correlation_id
        return Decided(state=state_of(updated, correlation), publish=published,
                       timers=pending_timers(aggregate.timers, decision.timers, updated))

    def repeat(self, aggregate: Aggregate, message: Envelope) -> Sequence[Envelope]:
        """A redelivery.  If the item is done, its outcome may be what got lost (a broker
        that lost its data): answer again; the coordinator drops repeats."""
        answer = _outcome_again(item_in(aggregate), message)
        return [] if answer is None else [answer]

    @staticmethod
    def _command(aggregate: Aggregate, message: Envelope) -> Command:
        payload = message.payload
        if isinstance(payload, WorkItemRequested):
            return OpenWorkItem(aggregate.key, message.run_id or "", payload)
        assert isinstance(payload, WorkItemCancelRequested)  # route() took no other
        return Cancel(reason=payload.reason)


def _outcome_again(item: WorkItem | None, request: Envelope) -> Envelope | None:
    if item is None or item.status != "completed" or not isinstance(
            request.payload, WorkItemRequested):
        return None
    # The outcome again, for a run that asks again (a re-sent dispatch): it names no
    # recipients, so nobody is told a second time that the item is done.
    outcome = WorkItemCompleted(**about(item, item.completed_by or "system", recipients=[]),
                                attempt=item.attempt, outputs=item.outputs,
                                decision=item.decision, comment=item.comment or "")
    return new_event(outcome, producer=PRODUCER, run_id=item.run_id, cause=request,
                     event_id=derived_id(item.id, "outcome"))
