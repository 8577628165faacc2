"""The assignment shell on the spine's in-memory store: the dispatch consumer, people's
actions and the item timers, with what each costs in round trips (counted, not timed)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from assignment_builders import DIRECTORY, request

from contracts import Envelope
from contracts.envelope import new_event
from contracts.events.workitems import Escalation, WorkItemCancelRequested
from services.assignment.core import commands as cmd
from services.assignment.core.directory import Directory
from services.assignment.guide import WorkGuide
from services.assignment.handler import DispatchHandler
from services.assignment.store import is_active
from shared.spine.memory_store import MemoryAggregateStore
from shared.spine.written import WrittenCache


class MemoryWorkItems:
    """What the handler and the guide use of WorkItemStore, over the in-memory spine."""

    def __init__(self, sharing: MemoryWorkItems | None = None) -> None:
        self.spine = MemoryAggregateStore(sharing=sharing.spine if sharing else None)
        self.written = WrittenCache(self.spine, keep=is_active)

    async def get(self, item_id: str) -> dict[str, Any] | None:
        doc = self.spine.documents.get(item_id)
        return None if doc is None else dict(doc)

    async def waiting(self, limit: int) -> list[str]:
        return [k for k, d in self.spine.documents.items() if d.get("status") == "waiting"]


class FixedDirectory:
    def __init__(self, directory: Directory = DIRECTORY) -> None:
        self.directory = directory

    async def current(self, *, fresh: bool = False) -> Directory:
        return self.directory


def parts() -> tuple[MemoryWorkItems, DispatchHandler, WorkGuide]:
    store, directory = MemoryWorkItems(), FixedDirectory()
    return (store, DispatchHandler(store, directory),  # type: ignore[arg-type]
            WorkGuide(store, directory))  # type: ignore[arg-type]


def dispatch(run_id: str, *, at: datetime | None = None, **spec: Any) -> Envelope:
    return new_event(request(**spec), producer="coordinator", run_id=run_id, occurred_at=at)


def published(store: MemoryWorkItems) -> list[str]:
    return [e.type for e in store.spine.published]


async def test_a_batch_of_dispatches_costs_one_find_and_one_write() -> None:
    store, handler, _ = parts()
    batch = [dispatch(uuid.uuid4().hex) for _ in range(25)]
    await handler(batch)
    # The writer's mark is written once before its first outbox (then about once a second).
    assert store.spine.round_trips == {"find": 1, "write": 1, "mark": 1}
    assert len(store.spine.documents) == 25
    assert published(store) == ["WorkItemAssigned"] * 25


async def test_a_redelivery_is_dropped_and_a_done_items_outcome_answered_again() -> None:
    store, handler, guide = parts()
    run_id = uuid.uuid4().hex
    message = dispatch(run_id)
    await handler([message])
    item_id = f"{run_id}:collect:1"
    done = await guide.act(item_id, cmd.Complete("ann", {}), DIRECTORY)
    assert done.rejection is None and done.item is not None and done.item.status == "completed"
    revision = store.spine.documents[item_id]["revision"]
    before = len(store.spine.published)
    await handler([message, message])
    assert store.spine.documents[item_id]["revision"] == revision  # nothing written
    again = store.spine.published[before:]
    assert [e.type for e in again] == ["WorkItemCompleted"] * 2  # the step's outcome again
    assert len({e.event_id for e in again}) == 1  # the same id: the coordinator drops it
    assert again[0].payload.recipients == [] and again[0].payload.attempt == 1  # type: ignore[attr-defined]


async def test_concurrent_completions_cost_one_find_and_one_write() -> None:
    store, handler, _ = parts()
    runs = [uuid.uuid4().hex for _ in range(30)]
    await handler([dispatch(run) for run in runs])
    replica = MemoryWorkItems(sharing=store)  # it wrote none of them: it reads them
    guide = WorkGuide(replica, FixedDirectory())  # type: ignore[arg-type]
    outcomes = await asyncio.gather(*(guide.act(f"{run}:collect:1", cmd.Complete("ann", {}),
                                                DIRECTORY) for run in runs))
    assert all(o.rejection is None for o in outcomes)
    # One find of the items (and one of the marks of the writer that opened them).
    assert replica.spine.round_trips == {"find": 2, "write": 1, "mark": 1}
    assert published(replica).count("WorkItemCompleted") == 30
    assert "StepCompleted" not in published(store)  # the completion is the step's outcome


async def test_completing_an_item_this_process_opened_costs_one_write() -> None:
    store, handler, guide = parts()
    runs = [uuid.uuid4().hex for _ in range(30)]
    await handler([dispatch(run) for run in runs])
    store.spine.round_trips.clear()
    outcomes = await asyncio.gather(*(guide.act(f"{run}:collect:1", cmd.Complete("ann", {}),
                                                DIRECTORY) for run in runs))
    assert all(o.rejection is None for o in outcomes)
    assert store.spine.round_trips == {"write": 1}  # decided on the items as it wrote them
    read_back = MemoryWorkItems(sharing=store)
    assert {k: d["status"] for k, d in read_back.spine.documents.items()} == {
        f"{run}:collect:1": "completed" for run in runs}


async def test_a_refusal_decided_on_a_stale_item_is_decided_again_on_a_fresh_read() -> None:
    store, handler, guide = parts()
    run_id = uuid.uuid4().hex
    await handler([dispatch(run_id)])  # ann's, as this process keeps it
    item_id = f"{run_id}:collect:1"
    other = WorkGuide(MemoryWorkItems(sharing=store), FixedDirectory())  # type: ignore[arg-type]
    moved = await other.act(item_id, cmd.Reassign("dave", "user", "bob"), DIRECTORY)
    assert moved.rejection is None
    store.spine.round_trips.clear()
    # On what this process wrote, bob cannot see the item (404); on a fresh read it is his.
    outcome = await guide.act(item_id, cmd.Complete("bob", {}), DIRECTORY)
    assert outcome.rejection is None and outcome.item is not None
    assert outcome.item.completed_by == "bob"
    # The item read again (and the other writer's mark), then written.
    assert store.spine.round_trips == {"find": 2, "write": 1}
    refused = await guide.act(item_id, cmd.Complete("ann", {}), DIRECTORY)
    assert refused.rejection is not None  # finished: read, not kept


async def test_a_change_decided_on_a_stale_item_loses_and_is_decided_again() -> None:
    store, handler, guide = parts()
    run_id = uuid.uuid4().hex
    await handler([dispatch(run_id)])
    item_id = f"{run_id}:collect:1"
    other = WorkGuide(MemoryWorkItems(sharing=store), FixedDirectory())  # type: ignore[arg-type]
    assert (await other.act(item_id, cmd.Comment("ann", "on it"), DIRECTORY)).rejection is None
    store.spine.round_trips.clear()
    outcome = await guide.act(item_id, cmd.Complete("ann", {}), DIRECTORY)
    assert outcome.rejection is None and outcome.item is not None
    assert [e.action for e in outcome.item.history if e.action != "assign"] == [
        "open", "comment", "complete", "complete"]  # its status, by whom
    # Lost, read again (with the other writer's mark), written.
    assert store.spine.round_trips == {"write": 2, "find": 2}
    assert published(store).count("WorkItemCompleted") == 1


async def test_racing_claims_in_one_group_leave_one_claimer_and_one_refusal() -> None:
    store, handler, guide = parts()
    run_id = uuid.uuid4().hex
    await handler([dispatch(run_id, kind="group", value="hr")])  # bob's group
    pooled = {**DIRECTORY.to_document()}
    pooled["groups"] = [{"id": "hr", "members": ["bob", "gary"]}]
    directory = Directory.from_document(pooled)
    item_id = f"{run_id}:collect:1"
    one, two = await asyncio.gather(guide.act(item_id, cmd.Claim("bob"), directory),
                                    guide.act(item_id, cmd.Claim("gary"), directory))
    assert one.rejection is None and one.item is not None and one.item.claimed_by == "bob"
    assert two.rejection is not None and two.rejection.code in ("conflict", "forbidden")
    assert published(store).count("WorkItemClaimed") == 1


async def test_a_cancel_withdraws_the_newest_item_of_the_step() -> None:
    store, handler, _ = parts()
    run_id = uuid.uuid4().hex
    await handler([dispatch(run_id)])
    cancel = new_event(WorkItemCancelRequested(step="collect", reason="the run was canceled"),
                       producer="coordinator", run_id=run_id)
    await handler([cancel, cancel])
    assert store.spine.documents[f"{run_id}:collect:1"]["status"] == "canceled"
    assert published(store).count("WorkItemCanceled") == 1


async def test_due_timers_fire_once_through_the_timer_loop() -> None:
    store, handler, guide = parts()
    run_id = uuid.uuid4().hex
    opened = datetime.now(UTC) - timedelta(days=3)  # every timer is due now
    await handler([dispatch(run_id, at=opened, due_at=opened + timedelta(days=1),
                            before=[3600.0], escalation=Escalation(after_due_seconds=60))])
    item_id = f"{run_id}:collect:1"
    assert len(store.spine.documents[item_id]["timers"]) == 2
    store.spine.round_trips.clear()
    assert await guide.fire_due_timers() == 2
    # due (find), lease (claim), both timers decided on one read and written once
    assert store.spine.round_trips == {"find": 2, "claim": 1, "write": 1}
    doc = store.spine.documents[item_id]
    assert doc["escalated"] and doc["assignee"] == "carol"  # ann's manager
    assert doc["timers"] == [] and "next_timer_at" not in doc
    assert await guide.fire_due_timers() == 0
    assert published(store).count("WorkItemReminderDue") == 1
    assert published(store).count("WorkItemEscalated") == 1


async def test_items_waiting_for_the_directory_are_assigned_in_one_write() -> None:
    store, handler, guide = parts()
    runs = [uuid.uuid4().hex for _ in range(5)]
    await handler([dispatch(run, kind="queue", value="night") for run in runs])
    assert {d["status"] for d in store.spine.documents.values()} == {"waiting"}
    document = DIRECTORY.to_document()
    document["queues"] = [*document["queues"], {"id": "night", "members": ["gary"]}]
    guide.directory = FixedDirectory(Directory.from_document(document, revision=2))  # type: ignore[assignment]
    store.spine.round_trips.clear()
    assert await guide.assign_waiting() == 5
    assert store.spine.round_trips == {"write": 1}  # the waiting items as it wrote them
