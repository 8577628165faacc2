"""Jobs any coordinator replica may run: fire due timers, reconcile after a broker loss.

Neither changes a run's state: a due timer becomes a TimerFired command on the run's
partition (its owner applies it; a stale one is rejected), and the reconcile re-sends
what runs wait for (consumers drop the duplicates by event id).  Outboxes a stop left
behind are swept by the run store's outbox marks (:mod:`shared.spine.marks`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from contracts.envelope import derived_id, new_event
from contracts.events.commands import TimerFired
from services.stage_coordinator.dispatches import dispatched
from services.stage_coordinator.store import ACTIVE_RUNS
from shared.due import Alarm, Clock, utc_now
from shared.messaging import Publisher
from shared.mongo import IndexOnDemand, free_lease
from shared.outgoing import Outgoing
from shared.spine.marks import OutboxMarks

log = logging.getLogger("baton.coordinator.jobs")
PRODUCER = "stage-coordinator"
LEASE = timedelta(seconds=30)
BATCH = 500


class TimerFirer:
    """Fires the due timers; answers when the next one is due (shared/due.py).

    Woken by the run store's alarm when this process saves a timer due sooner than it
    planned; timers of runs saved elsewhere are found within the loop's longest sleep.
    While the timers' index does not exist no run has a timer (decision 36): nothing is
    due, and the look costs one ``listIndexes`` instead of two finds.  ``timers_index``
    is the run store's (None: the caller's collection has it).
    """

    def __init__(self, runs: AsyncCollection[dict[str, Any]], publisher: Publisher,
                 clock: Clock = utc_now, *, timers_index: IndexOnDemand | None = None) -> None:
        self.runs = runs
        self.publisher = publisher
        self.clock = clock
        self.timers_index = timers_index
        self.fired = 0

    async def __call__(self) -> datetime | None:
        if not await _timers_exist(self.timers_index):
            return None
        now = self.clock()
        claimed, seen = 0, 0
        found = self.runs.find(due_timers(now), {"timers": 1, "next_timer_at": 1})
        async for doc in found.limit(BATCH):
            seen += 1
            claimed_one = await self.runs.update_one(
                timer_claim(doc["_id"], doc["next_timer_at"], now),
                {"$set": {"timer_lease_until": now + LEASE}},
            )
            if claimed_one.modified_count != 1:
                continue  # another replica has it
            claimed += 1
            due = [t for t in doc.get("timers", []) if _aware(t["due_at"]) <= now]
            await self.publisher.publish(
                new_event(
                    TimerFired(timer_id=t["id"], purpose=t["purpose"], step=t.get("step"),
                               epoch=t.get("epoch", 0)),
                    producer=PRODUCER,
                    run_id=doc["_id"],
                    event_id=derived_id(doc["_id"], t["id"]),
                    occurred_at=now,
                )
                for t in due
            )
            self.fired += len(due)
        if seen == BATCH:
            return now  # more are due: go on at once
        upcoming = await self.runs.find(
            next_timer(now), {"next_timer_at": 1}).sort("next_timer_at", 1).limit(1).to_list(None)
        next_due = _aware(upcoming[0]["next_timer_at"]) if upcoming else None
        if claimed:  # fired again when the lease runs out, if no owner applied them by then
            next_due = min(next_due or now + LEASE, now + LEASE)
        return next_due


def due_timers(now: datetime) -> dict[str, Any]:
    """Runs with a timer due that no replica holds: the sparse ``next_timer_at`` index
    (asked only once it exists, decision 36)."""
    return {"next_timer_at": {"$lte": now}, **free_lease("timer_lease_until", now)}


def next_timer(now: datetime) -> dict[str, Any]:
    """Runs whose next timer is still ahead: the smallest ``next_timer_at`` is the wake."""
    return {"next_timer_at": {"$gt": now}}


def timer_claim(run_id: str, next_timer_at: datetime, now: datetime) -> dict[str, Any]:
    return {"_id": run_id, "next_timer_at": next_timer_at, **free_lease("timer_lease_until", now)}


async def _timers_exist(index: IndexOnDemand | None) -> bool:
    """Whether any run may have a timer (or a timer's lease): its index exists."""
    return index is None or await index.exists()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Reconciler:
    """After the broker lost its data: re-send what runs wait for, from their documents.

    - the dispatch of every step in flight (same event id: a step-runner or assignment that
      saw it already answers from what it stored, one that did not acts on it now);
    - every outbox beyond its writer's mark, however young (with its unpaged history);
    - every timer now, instead of after its firer's lease runs out.
    """

    def __init__(self, runs: AsyncCollection[dict[str, Any]], publisher: Publisher,
                 outboxes: OutboxMarks, timers: Alarm | None = None, *,
                 timers_index: IndexOnDemand | None = None) -> None:
        self.runs = runs
        self.publisher = publisher
        self.outboxes = outboxes
        self.timers = timers or Alarm()
        self.timers_index = timers_index  # the run store's, as for the TimerFirer

    async def __call__(self) -> int:
        resent = 0
        query = {**ACTIVE_RUNS, "status": "running", "active_steps.dispatch": {"$ne": None}}
        cursor = self.runs.find(query, {"active_steps": 1})
        batch: list[Outgoing] = []
        async for doc in cursor:
            batch.extend(dispatched(a["dispatch"]) for a in doc.get("active_steps", [])
                         if a.get("dispatch"))
            if len(batch) >= BATCH:
                await self.publisher.send(batch)
                resent, batch = resent + len(batch), []
        await self.publisher.send(batch)
        resent += len(batch)
        swept = await self.outboxes.sweep(older_than=timedelta(0))
        if await _timers_exist(self.timers_index):  # no timers' index: no timer, no lease
            await self.runs.update_many({"timer_lease_until": {"$exists": True}},
                                        {"$unset": {"timer_lease_until": ""}})
        self.timers.due(datetime.now(UTC))  # the firer looks now, not at its next wake
        log.warning("reconciled: re-sent %d dispatches and %d outboxes", resent, swept)
        return resent
