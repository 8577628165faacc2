"""People's commands and due timers applied to work items, on the spine.

The Work Guide API, its pages and the timer loop all come through one
:class:`shared.spine.GroupCommit`: commands that arrive together are decided with the pure
core on one read and written in one bulk write under the revisions read; a command that
lost to another writer is decided again on a fresh read (a few times, then a 409), so a
claim and a completion racing for one item are serialized, never merged.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contracts import Envelope
from contracts.envelope import derived_id, new_event
from contracts.registry import MAX_MESSAGE_BYTES, plainly_safe, refusal_of_dumped
from services.assignment.core.commands import AssignWaiting, Command, Escalate, FireReminder
from services.assignment.core.decide import handle
from services.assignment.core.directory import Directory, User
from services.assignment.core.people import ADMIN_ROLE
from services.assignment.core.rejection import Rejection
from services.assignment.core.workitem import WorkItem
from services.assignment.directory_store import DirectoryStore
from services.assignment.store import (
    WorkItemStore,
    due_timers,
    item_in,
    item_of,
    pending_timers,
    state_of,
    waiting_items,
)
from shared.auth import Principal
from shared.outgoing import Outgoing, outgoing
from shared.spine import Aggregate, Conflict, Decided, GroupCommit, TimerDue, TimerLoop

log = logging.getLogger("baton.assignment.guide")
PRODUCER = "assignment"
ATTEMPTS = 5
TIMER_BATCH = 200
__all__ = ["Outcome", "WorkGuide", "due_timers", "waiting_items"]


@dataclass(frozen=True)
class Outcome:
    """What an action came to: the item as it is now, or why it was refused."""

    item: WorkItem | None
    rejection: Rejection | None = None


@dataclass(frozen=True)
class Request:
    """A person's (or the waiting job's) command, with the directory it is decided on."""

    command: Command
    directory: Directory
    at: datetime


class WorkGuide:
    def __init__(self, store: WorkItemStore, directory: DirectoryStore, *,
                 timer_max_sleep: float = 30.0) -> None:
        self.store = store
        self.directory = directory
        self._tried_revision: int | None = None  # the directory waiting items last met
        self.actor = GroupCommit(store.written, self._decide, attempts=ATTEMPTS)
        self.timers = TimerLoop(store.spine, self.actor, context=directory.current,
                                max_sleep=timer_max_sleep, batch=TIMER_BATCH)

    async def directory_for(self, principal: Principal) -> Directory:
        """The directory as the core should see this caller.

        A principal's roles are the directory's (shared/auth.py), but the bootstrap admin
        token is no person in the directory at all: it is added as an admin for the
        decision.
        """
        directory = await self.directory.current()
        if not principal.bootstrap or directory.is_admin(principal.user_id):
            return directory
        known = directory.users.get(principal.user_id)
        user = (known.model_copy(update={"roles": (*known.roles, ADMIN_ROLE)}) if known
                else User(id=principal.user_id, roles=(ADMIN_ROLE,)))
        return directory.model_copy(update={"users": {**directory.users, user.id: user}})

    async def view(self, item_id: str) -> WorkItem | None:
        return item_of(await self.store.get(item_id))

    async def act(self, item_id: str, command: Command, directory: Directory, *,
                  now: datetime | None = None) -> Outcome:
        """Apply one command to the item and store it with what it publishes."""
        request = Request(command, directory, now or datetime.now(UTC))
        try:
            outcome: Outcome = await self.actor.act(item_id, request)
        except Conflict:
            return Outcome(None, Rejection("the work item is changing right now; try again",
                                           "conflict"))
        return outcome

    async def fire_due_timers(self) -> int:
        """Fire every reminder and escalation due now (one tick of the timer loop)."""
        fired, _ = await self.timers.tick()
        return fired

    async def assign_waiting(self) -> int:
        """Give waiting items their assignee once the directory changed (any replica).

        Only a directory revision they have not met yet can resolve them (the dispatch
        consumer tried the directory as stored when it opened them), so an unchanged
        directory costs nothing here but the cached read; a changed one costs one find,
        and the items' commands are group-committed (one find, one write).
        """
        directory = await self.directory.current()
        if directory.revision == self._tried_revision:
            return 0
        waiting = await self.store.waiting(TIMER_BATCH)
        outcomes = await asyncio.gather(*(self.act(i, AssignWaiting(), directory)
                                          for i in waiting))
        if len(waiting) < TIMER_BATCH:  # else the rest are tried on the next tick
            self._tried_revision = directory.revision
        return sum(o.item is not None and o.item.status != "waiting" for o in outcomes)

    def _decide(self, aggregate: Aggregate, command: Request | TimerDue) -> Decided:
        """The pure core's decision as the spine stores it; the reply is an :class:`Outcome`."""
        if isinstance(command, TimerDue):
            return self._fire(aggregate, command.timer, command.context)
        item = item_in(aggregate)
        updated, decision = handle(item, command.command, command.at, command.directory)
        if isinstance(decision, Rejection):
            return Decided(reply=Outcome(item, decision))
        if updated is None or not decision.events:
            return Decided(reply=Outcome(updated))
        published = [new_event(p, producer=PRODUCER, run_id=updated.run_id,
                               occurred_at=command.at, correlation_id=_correlation(aggregate))
                     for p in decision.published]
        checked = _checked(published)
        if isinstance(checked, str):
            reason = f"the answer cannot be sent to the run: {checked}"
            return Decided(reply=Outcome(item, Rejection(reason, "invalid")))
        return self._store(aggregate, updated, decision.timers, checked)

    def _fire(self, aggregate: Aggregate, timer: Any, directory: Directory) -> Decided:
        """A due reminder or escalation; the ids of what it publishes come from the timer,
        so a timer fired twice publishes the same events."""
        command: Command = (
            Escalate(epoch=timer["epoch"]) if timer["purpose"] == "escalation"
            else FireReminder(epoch=timer["epoch"], overdue=bool(timer.get("overdue")))
        )
        item = item_in(aggregate)
        at = datetime.now(UTC)
        updated, decision = handle(item, command, at, directory)
        if isinstance(decision, Rejection):
            log.info("%s timer of %s refused: %s", timer["purpose"], aggregate.key,
                     decision.reason)
            return Decided(reply=Outcome(item, decision))  # the timer still leaves
        if updated is None or not decision.events:
            return Decided(reply=Outcome(updated))
        cause = _timer_id(aggregate.key, timer)
        published = [new_event(p, producer=PRODUCER, run_id=updated.run_id, occurred_at=at,
                               event_id=derived_id(cause, i),
                               correlation_id=_correlation(aggregate))
                     for i, p in enumerate(decision.published)]
        return self._store(aggregate, updated, decision.timers, published)

    @staticmethod
    def _store(aggregate: Aggregate, updated: WorkItem, planned: Any, published: Any) -> Decided:
        """The item stored with its outbox (built under the run's correlation id)."""
        return Decided(state=state_of(updated, _correlation(aggregate)), publish=published,
                       timers=pending_timers(aggregate.timers, planned, updated),
                       reply=Outcome(updated))


def _correlation(aggregate: Aggregate) -> str | None:
    """The run's correlation id, which every event about the item carries."""
    return (aggregate.state or {}).get("correlation_id")


def _checked(published: list[Envelope]) -> list[Outgoing] | str:
    """These messages encoded as they will be sent, or why the run's consumers would
    refuse one of them (the first such).

    They were built from validated models, so only what their JSON can break is checked
    (nesting, 64-bit integers, text, size: :func:`contracts.registry.refusal_of_dumped`);
    parsing each one back as a consumer does cost half the CPU of deciding a completion.
    The bytes to send are written here, once, and most are plainly fine as they are
    (:func:`_plainly_fine`); the others are judged as before, on their dumped values.
    """
    messages = []
    for envelope in published:
        try:
            message: Outgoing | None = outgoing(envelope)
        except ValueError:  # text JSON cannot hold (a lone surrogate): judged below
            message = None
        if message is None or not _plainly_fine(message.value):
            reason = refusal_of_dumped(envelope.model_dump(mode="json"))
            if reason is not None:
                return reason
            message = message or outgoing(envelope)
        messages.append(message)
    return messages


def _plainly_fine(raw: bytes) -> bool:
    """Whether :func:`contracts.registry.refusal_of_dumped` would accept the message these
    bytes encode, judged on them: nothing in them a consumer's checks refuse
    (:func:`contracts.registry.plainly_safe`), and at most half the size limit (the dumped
    values, written again by ``json``, may differ by a character in a float's exponent).
    """
    return 2 * len(raw) <= MAX_MESSAGE_BYTES and plainly_safe(raw)


def _timer_id(item_id: str, timer: Any) -> str:
    return f"{item_id}:{timer['purpose']}:{timer['epoch']}:{timer['due_at'].isoformat()}"
