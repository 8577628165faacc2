"""Opens and withdraws work items from the coordinator's dispatches.

Per batch: one find for the items of the batch's runs, decide per message with the pure
core, one conditional bulk write of the items with their outboxes and timers, publish,
clear.  A write that loses to another writer (the Work Guide API, the timer job, another
replica) raises :class:`Conflict`; the consumer retries the batch, which reads again.
"""

from __future__ import annotations

import logging
from typing import Any

from contracts import Envelope
from contracts.envelope import derived_id, new_event
from contracts.events.steps import StepCompleted
from contracts.events.workitems import (
    WorkItemAssignmentFailed,
    WorkItemCancelRequested,
    WorkItemRequested,
)
from services.assignment.core.commands import Cancel, Command, OpenWorkItem
from services.assignment.core.decide import handle
from services.assignment.core.directory import Directory
from services.assignment.core.rejection import Rejection
from services.assignment.core.workitem import WorkItem
from services.assignment.directory_store import DirectoryStore
from services.assignment.store import (
    ACTIVE,
    WorkItemStore,
    failed_document,
    item_of,
    next_document,
    work_item_id,
)

log = logging.getLogger("baton.assignment")
PRODUCER = "assignment"

Change = tuple[dict[str, Any] | None, dict[str, Any]]


class DispatchHandler:
    def __init__(self, store: WorkItemStore, directory: DirectoryStore) -> None:
        self.store = store
        self.directory = directory

    async def __call__(self, envelopes: list[Envelope]) -> None:
        docs = {d["_id"]: d for d in await self.store.of_runs({e.run_id for e in envelopes
                                                              if e.run_id})}
        await self._publish_leftovers(docs)
        changes, answers, failed = self._decide(envelopes, docs,
                                                await self.directory.current())
        if failed:  # perhaps an assignee another replica just added: decide on a fresh read
            changes, answers, _ = self._decide(envelopes, docs,
                                               await self.directory.current(fresh=True))
        await self.store.commit(list(changes.values()))
        await self.store.outbox.publisher.publish(answers)

    def _decide(
        self, envelopes: list[Envelope], docs: dict[str, dict[str, Any]], directory: Directory
    ) -> tuple[dict[str, Change], list[Envelope], bool]:
        """Each message's change, redelivery answers, and whether any assignment failed."""
        failed = False
        changes: dict[str, Change] = {}
        answers: list[Envelope] = []
        for envelope in envelopes:
            target = self._command(envelope, docs, changes)
            if target is None:
                continue
            item_id, command = target
            read = docs.get(item_id)
            current = changes[item_id][1] if item_id in changes else read
            updated, decision = handle(item_of(current), command, envelope.occurred_at, directory)
            if isinstance(decision, Rejection):
                log.info("%s on %s refused: %s", envelope.type, item_id, decision.reason)
                continue
            if not decision.events:
                # A redelivery.  If the item is done, its outcome may be what got lost (a
                # broker that lost its data): answer again; the coordinator drops repeats.
                answer = _outcome_again(item_of(current), envelope)
                if answer is not None:
                    answers.append(answer)
                continue
            published = [
                new_event(p, producer=PRODUCER, cause=envelope,
                          event_id=derived_id(envelope.event_id, i))
                for i, p in enumerate(decision.published)
            ]
            if updated is None or updated.status == "waiting":
                failed = True
            if updated is None:
                failure = next(e for e in decision.events
                               if isinstance(e, WorkItemAssignmentFailed))
                payload = envelope.payload
                assert isinstance(payload, WorkItemRequested)
                new = failed_document(current, item_id=item_id, run_id=envelope.run_id or "",
                                      step=payload.step, attempt=payload.attempt,
                                      error=failure.error, published=published,
                                      now=envelope.occurred_at)
            else:
                new = next_document(current, updated, published=published,
                                    timers=decision.timers, now=envelope.occurred_at,
                                    correlation_id=envelope.correlation_id)
            changes[item_id] = (read, new)
        return changes, answers, failed

    def _command(
        self, envelope: Envelope, docs: dict[str, dict[str, Any]], changes: dict[str, Change]
    ) -> tuple[str, Command] | None:
        payload, run_id = envelope.payload, envelope.run_id or ""
        if isinstance(payload, WorkItemRequested):
            item_id = work_item_id(run_id, payload.step, payload.attempt)
            return item_id, OpenWorkItem(item_id, run_id, payload)
        if isinstance(payload, WorkItemCancelRequested):
            # The run withdraws a step it still waits for: its newest item, open or (when
            # the answer crossed the cancel and will not be used) completed.
            latest = {**docs, **{k: new for k, (_, new) in changes.items()}}
            of_step = [d for d in latest.values() if d.get("run_id") == run_id
                       and d.get("step") == payload.step]
            newest = max(of_step, key=lambda d: d.get("attempt", 0), default=None)
            if newest is None or newest.get("status") not in (*ACTIVE, "completed"):
                return None
            return newest["_id"], Cancel(reason=payload.reason)
        return None

    async def _publish_leftovers(self, docs: dict[str, dict[str, Any]]) -> None:
        """Outboxes a crash left unpublished go out before anything new is decided."""
        leftovers = [d for d in docs.values() if d.get("outbox")]
        if leftovers:
            await self.store.outbox.flush(leftovers)
            for doc in leftovers:
                doc["outbox"] = []
                doc.pop("outbox_at", None)


def _outcome_again(item: WorkItem | None, request: Envelope) -> Envelope | None:
    if item is None or item.status != "completed" or not isinstance(
            request.payload, WorkItemRequested):
        return None
    outcome = StepCompleted(step=item.step, attempt=item.attempt, outputs=item.outputs,
                            completed_by=item.completed_by or "system", decision=item.decision,
                            comment=item.comment)
    return new_event(outcome, producer=PRODUCER, run_id=item.run_id, cause=request,
                     event_id=derived_id(item.id, "outcome"))
