"""People's commands and due timers applied to one work item: read, decide, write, publish.

The Work Guide API and the timer job both come through :meth:`WorkGuide.act`.  It reads
the item, lets the pure core decide, and writes under the revision it read; when another
writer got there first it reads and decides again (a few times, then gives up with a
409), so a claim and a completion racing for one item are serialized, never merged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contracts.envelope import derived_id, new_event
from contracts.registry import refusal
from services.assignment.core.commands import AssignWaiting, Command, Escalate, FireReminder
from services.assignment.core.decide import handle
from services.assignment.core.directory import Directory, User
from services.assignment.core.people import ADMIN_ROLE
from services.assignment.core.rejection import Rejection
from services.assignment.core.workitem import WorkItem
from services.assignment.directory_store import DirectoryStore
from services.assignment.store import (
    Conflict,
    WorkItemStore,
    item_of,
    next_document,
    timer_key,
)
from shared.auth import Principal

log = logging.getLogger("baton.assignment.guide")
PRODUCER = "assignment"
ATTEMPTS = 5
TIMER_BATCH = 200


@dataclass(frozen=True)
class Outcome:
    """What an action came to: the item as it is now, or why it was refused."""

    item: WorkItem | None
    rejection: Rejection | None = None


def due_timers(now: datetime) -> dict[str, Any]:
    """Items with a reminder or escalation due: the sparse ``next_timer_at`` index.

    Only active items have ``next_timer_at`` (a finished item's document is written
    without it), so no status clause: with one, the embedded MongoDB plans on the
    ``(status, due_at)`` index and reads every open item, twice a second.
    """
    return {"next_timer_at": {"$lte": now}}


def waiting_items() -> dict[str, Any]:
    """Items waiting for the directory to name an assignee (the ``(status, due_at)`` index)."""
    return {"status": "waiting"}


class WorkGuide:
    def __init__(self, store: WorkItemStore, directory: DirectoryStore) -> None:
        self.store = store
        self.directory = directory
        self._tried_revision: int | None = None  # the directory waiting items last met

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

    async def act(
        self,
        item_id: str,
        command: Command,
        directory: Directory,
        *,
        now: datetime | None = None,
        timer: dict[str, Any] | None = None,
    ) -> Outcome:
        """Apply one command to the item and store it with what it publishes.

        ``timer`` is the stored timer a FireReminder or Escalate comes from: it leaves
        the item with the write (also when stale), and the ids of what it publishes are
        derived from it, so a timer fired twice publishes the same events.
        """
        for _ in range(ATTEMPTS):
            doc = await self.store.get(item_id)
            if timer is not None and not _pending(doc, timer):
                return Outcome(item_of(doc))  # another replica fired it already
            item = item_of(doc)
            at = now or datetime.now(UTC)
            updated, decision = handle(item, command, at, directory)
            if isinstance(decision, Rejection):
                return Outcome(item, decision)
            if updated is None or (not decision.events and timer is None):
                return Outcome(updated)
            published = [
                new_event(p, producer=PRODUCER, run_id=updated.run_id, occurred_at=at,
                          event_id=derived_id(_timer_key(item_id, timer), i) if timer else None)
                for i, p in enumerate(decision.published)
            ]
            refused = next(filter(None, map(refusal, published)), None)
            if refused is not None:
                reason = f"the answer cannot be sent to the run: {refused}"
                return Outcome(item, Rejection(reason, "invalid"))
            correlation = (doc or {}).get("correlation_id")
            if correlation:
                published = [e.model_copy(update={"correlation_id": correlation})
                             for e in published]
            new = next_document(doc, updated, published=published, timers=decision.timers,
                                fired=[timer] if timer else [], now=at)
            try:
                await self.store.commit([(doc, new)])
            except Conflict:
                continue
            return Outcome(updated)
        return Outcome(None, Rejection("the work item is changing right now; try again",
                                       "conflict"))

    async def fire_due_timers(self) -> int:
        """Fire every reminder and escalation that is due (any replica may run this)."""
        now = datetime.now(UTC)
        cursor = self.store.items.find(due_timers(now), {"timers": 1}).limit(TIMER_BATCH)
        fired = 0
        directory = await self.directory.current()
        async for doc in cursor:
            for timer in doc.get("timers", []):
                due = timer["due_at"] if timer["due_at"].tzinfo else timer["due_at"].replace(
                    tzinfo=UTC)
                if due > now:
                    break
                await self._fire(doc["_id"], timer, directory, now)
                fired += 1
        return fired

    async def assign_waiting(self) -> int:
        """Give waiting items their assignee once the directory changed (any replica).

        Only a directory revision they have not met yet can resolve them (the dispatch
        consumer tried the directory as stored when it opened them), so an unchanged
        directory costs nothing here but the cached read.
        """
        directory = await self.directory.current()
        if directory.revision == self._tried_revision:
            return 0
        docs = await self.store.items.find(waiting_items(), {"_id": 1}).limit(
            TIMER_BATCH).to_list(None)
        assigned = 0
        for doc in docs:
            outcome = await self.act(doc["_id"], AssignWaiting(), directory)
            assigned += outcome.item is not None and outcome.item.status != "waiting"
        if len(docs) < TIMER_BATCH:  # else the rest are tried on the next tick
            self._tried_revision = directory.revision
        return assigned

    async def _fire(
        self, item_id: str, timer: dict[str, Any], directory: Directory, now: datetime
    ) -> None:
        command: Command = (
            Escalate(epoch=timer["epoch"]) if timer["purpose"] == "escalation"
            else FireReminder(epoch=timer["epoch"], overdue=bool(timer.get("overdue")))
        )
        outcome = await self.act(item_id, command, directory, now=now, timer=timer)
        if outcome.rejection:
            log.info("%s timer of %s refused: %s", timer["purpose"], item_id,
                     outcome.rejection.reason)


def _pending(doc: dict[str, Any] | None, timer: dict[str, Any]) -> bool:
    key = timer_key(timer)
    return doc is not None and any(timer_key(t) == key for t in doc.get("timers", []))


def _timer_key(item_id: str, timer: dict[str, Any]) -> str:
    return f"{item_id}:{timer['purpose']}:{timer['epoch']}:{timer['due_at'].isoformat()}"
