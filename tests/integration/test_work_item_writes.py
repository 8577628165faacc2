"""Work item writes on the real MongoDB and Kafka: the revision guard serializes writers.

Two Work Guides (as two replicas would) race on the same items; each change lands once,
the loser decides again on what the winner wrote, and every event is published once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
from e2e.conftest import topic_messages
from fastapi import FastAPI, HTTPException, Request
from prometheus_client import CollectorRegistry
from pymongo import monitoring

from contracts.envelope import new_event
from contracts.events.workitems import (
    AssigneeSpec,
    Escalation,
    WorkItemCancelRequested,
    WorkItemRequested,
)
from services.assignment.api import work_router
from services.assignment.core import commands as cmd
from services.assignment.core.workitem import Status, WorkItem
from services.assignment.directory_store import DirectoryStore
from services.assignment.guide import WorkGuide
from services.assignment.handler import DispatchHandler
from services.assignment.store import PACKING, WorkItemStore, item_of, next_document
from services.assignment.web import pages
from shared.auth import Principal
from shared.messaging import Publisher, make_broker
from shared.metrics import ServiceMetrics
from shared.mongo import make_client
from shared.settings import ServiceSettings
from shared.spine import Conflict, Decided
from shared.topics import ensure_topics, topics_of

pytestmark = pytest.mark.integration

DIRECTORY = {
    "users": [{"id": "ann", "queues": ["desk"]}, {"id": "bo", "queues": ["desk"]},
              {"id": "cy", "manager": "ann"}],
    "queues": [{"id": "desk", "members": ["ann", "bo"]}],
}


@pytest.fixture(scope="module")
async def parts(servers: Any, database: str) -> AsyncIterator[dict[str, Any]]:
    settings = ServiceSettings(service_name="assignment-it",
                               kafka_bootstrap=servers.kafka_bootstrap,
                               mongodb_uri=servers.mongodb_uri, mongodb_database=database)
    metrics = ServiceMetrics(CollectorRegistry(), "assignment-it")
    # The topics the assignment service publishes to (its start-up would create them).
    await ensure_topics(servers.kafka_bootstrap, topics_of("assignment"))
    broker = make_broker(settings)
    await broker.connect()
    client = make_client(servers.mongodb_uri, app_name="assignment-it")
    db = client[database]
    publisher = Publisher(broker, metrics)
    directory = DirectoryStore(db)
    await directory.load(DIRECTORY)
    guides = [WorkGuide(WorkItemStore(db, publisher, metrics), directory) for _ in range(2)]
    yield {"db": db, "guides": guides, "directory": directory, "publisher": publisher,
           "metrics": metrics}
    await broker.stop()
    await client.close()


def request(step: str, assignee: AssigneeSpec, **extra: Any) -> WorkItemRequested:
    return WorkItemRequested(orchestration="it", version=1, stage="s", step=step, attempt=1,
                             kind="interactive", title=f"Do {step}", assignee=assignee, **extra)


async def open_item(parts: dict[str, Any], step: str, assignee: AssigneeSpec,
                    **extra: Any) -> tuple[str, str]:
    run_id = uuid.uuid4().hex
    handler = DispatchHandler(parts["guides"][0].store, parts["directory"])
    await handler([new_event(request(step, assignee, **extra), producer="test", run_id=run_id)])
    return run_id, f"{run_id}:{step}:1"


async def test_a_stale_write_is_refused(parts: dict[str, Any]) -> None:
    _, item_id = await open_item(parts, "stale", AssigneeSpec(kind="user", value="cy"))
    store: WorkItemStore = parts["guides"][0].store
    read = (await store.spine.load([item_id]))[item_id]
    first = read.after(Decided(state={**(read.state or {}), "comment": "first"}))
    second = read.after(Decided(state={**(read.state or {}), "comment": "second"}))
    await store.spine.save([first])
    with pytest.raises(Conflict) as raised:
        await store.spine.save([second])
    assert raised.value.keys == (item_id,)
    stored = await store.get(item_id)
    assert stored is not None and stored["comment"] == "first"
    assert stored["revision"] == read.revision + 1


async def test_racing_claims_from_two_replicas_leave_one_claimer(
    parts: dict[str, Any], servers: Any
) -> None:
    run_id, item_id = await open_item(parts, "race", AssigneeSpec(kind="queue", value="desk"))
    one, two = parts["guides"]
    directory = await parts["directory"].current()
    outcomes = await asyncio.gather(
        one.act(item_id, cmd.Claim("ann"), directory),
        two.act(item_id, cmd.Claim("bo"), directory),
    )
    winners = [o for o in outcomes if o.rejection is None]
    losers = [o for o in outcomes if o.rejection is not None]
    assert len(winners) == 1 and len(losers) == 1
    assert losers[0].rejection is not None and losers[0].rejection.code in ("conflict", "forbidden")
    stored = item_of(await one.store.get(item_id))
    assert stored is not None and stored.claimed_by == winners[0].item.claimed_by  # type: ignore[union-attr]
    events = await topic_messages(servers.kafka_bootstrap, "workitems.events", run_id=run_id)
    assert [e["type"] for e in events].count("WorkItemClaimed") == 1


async def test_a_timer_fired_by_two_replicas_reminds_once(
    parts: dict[str, Any], servers: Any
) -> None:
    due = datetime.now(UTC) + timedelta(seconds=1.2)
    run_id, item_id = await open_item(
        parts, "remind", AssigneeSpec(kind="user", value="cy"), due_at=due,
        reminders_before_due_seconds=[1.0], escalation=Escalation(after_due_seconds=0.3),
    )
    one, two = parts["guides"]
    await asyncio.sleep(1.8)
    fired = await asyncio.gather(one.fire_due_timers(), two.fire_due_timers())
    assert sum(fired) >= 2  # both replicas saw due timers
    stored = await one.store.get(item_id)
    assert stored is not None and stored["timers"] == [] and "next_timer_at" not in stored
    item = item_of(stored)
    assert item is not None and item.assignee == "ann" and item.escalated
    events = await topic_messages(servers.kafka_bootstrap, "workitems.events", run_id=run_id)
    # Publishing is at least once (an outbox can go out again before it is cleared), always
    # with the same event id, which consumers deduplicate; what must be single is the id.
    by_type: dict[str, set[str]] = {}
    for event in events:
        by_type.setdefault(event["type"], set()).add(event["event_id"])
    assert len(by_type["WorkItemReminderDue"]) == 1 and len(by_type["WorkItemEscalated"]) == 1
    assert [e.action for e in item.history].count("remind") == 1


async def test_a_redelivered_dispatch_opens_nothing_new(parts: dict[str, Any]) -> None:
    run_id = uuid.uuid4().hex
    envelope = new_event(request("again", AssigneeSpec(kind="user", value="cy")),
                         producer="test", run_id=run_id)
    handler = DispatchHandler(parts["guides"][0].store, parts["directory"])
    await handler([envelope])
    first = await parts["guides"][0].store.get(f"{run_id}:again:1")
    await handler([envelope, envelope])
    again = await parts["guides"][0].store.get(f"{run_id}:again:1")
    assert first is not None and again is not None
    assert again["revision"] == first["revision"] and again["history"] == first["history"]


class FindsOnWorkItems(monitoring.CommandListener):
    """Counts the ``find`` commands a client sends to ``work_items``."""

    def __init__(self) -> None:
        self.finds = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and event.command.get("find") == "work_items":
            self.finds += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


class Caller:
    """The API's authenticator, reduced to one signed-in person."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id

    async def principal(self, request: Request) -> Principal:
        return Principal(self.user_id)

    async def admin(self, request: Request) -> Principal:
        raise HTTPException(403, "not in this test")


def stored_item(tag: str, name: str, *, due_in_days: int, **fields: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    run_id = f"{tag}-{name}"
    item = WorkItem(id=f"{run_id}:review:1", run_id=run_id, orchestration=tag, version=1,
                    stage="s", step="review", attempt=1, kind="interactive", title=name,
                    due_at=now + timedelta(days=due_in_days), created_at=now, updated_at=now,
                    **fields)
    return next_document(None, item, published=[], now=now)


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "written-before-packing"])
async def test_my_work_is_one_query_whatever_makes_an_item_ones_own(
    parts: dict[str, Any], servers: Any, database: str, packed: bool
) -> None:
    """Assigned, in my queue (claimed by someone else), delegated to me, delegated by me:
    the API and the page each find them with one read, soonest due first; nobody else's
    item and no finished one comes along.  The same whether the items were stored packed
    (decision 32) or by a version before."""
    tag = uuid.uuid4().hex
    mine = [
        stored_item(tag, "assigned", due_in_days=3, assignee_kind="user", assignee="ann"),
        stored_item(tag, "in-my-queue", due_in_days=1, assignee_kind="queue", assignee="desk",
                    status=Status.CLAIMED, claimed_by="bo"),
        stored_item(tag, "delegated-to-me", due_in_days=2, assignee_kind="user",
                    assignee="cy", delegated_to="ann"),
        stored_item(tag, "delegated-by-me", due_in_days=4, assignee_kind="user",
                    assignee="cy", delegated_from="ann"),
    ]
    others = [
        stored_item(tag, "cys", due_in_days=1, assignee_kind="user", assignee="cy"),
        stored_item(tag, "done", due_in_days=1, assignee_kind="user", assignee="ann",
                    status=Status.COMPLETED),
    ]
    await parts["db"].work_items.insert_many(
        [PACKING.pack(d) if packed else d for d in [*mine, *others]])
    listener = FindsOnWorkItems()
    client = make_client(servers.mongodb_uri, app_name="my-work", listeners=[listener])
    try:
        guide = WorkGuide(WorkItemStore(client[database], parts["publisher"], parts["metrics"]),
                          parts["directory"])
        app = FastAPI()
        app.include_router(work_router(guide, cast(Any, Caller("ann"))))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://test") as http:
            answer = await http.get("/work", params={"orchestration": tag})
        assert answer.status_code == 200, answer.text
        assert [i["title"] for i in answer.json()] == [
            "in-my-queue", "delegated-to-me", "assigned", "delegated-by-me"]
        assert {(i["stage"], i["kind"]) for i in answer.json()} == {("s", "interactive")}
        assert listener.finds == 1

        ui = pages.WorkGuidePages(guide, cast(Any, Caller("ann")), "http://coordinator")
        directory = await parts["directory"].current()
        listed = await ui.my_work(pages.Viewer(Principal("ann"), directory, "t"), "active",
                                  overdue=False)
        assert {i.title for i in listed if i.orchestration == tag} == {
            "in-my-queue", "delegated-to-me", "assigned", "delegated-by-me"}
        assert listener.finds == 2
    finally:
        await client.close()


async def test_an_assignee_another_replica_just_added_is_found(parts: dict[str, Any]) -> None:
    """Found by make chaos (2 replicas): a replica whose cached directory predates a load
    failed every item for the new queue for up to two seconds."""
    other = DirectoryStore(parts["db"])
    await other.current()  # this replica has cached the directory...
    queue = f"q{uuid.uuid4().hex[:8]}"
    extended = {**DIRECTORY, "queues": [*DIRECTORY["queues"],
                                        {"id": queue, "members": ["ann"]}]}
    await parts["directory"].load(extended)  # ...when another one loads a new queue
    try:
        handler = DispatchHandler(parts["guides"][0].store, other)
        run_id = uuid.uuid4().hex
        await handler([new_event(request("fresh", AssigneeSpec(kind="queue", value=queue)),
                                 producer="test", run_id=run_id)])
        item = await parts["guides"][0].store.get(f"{run_id}:fresh:1")
        assert item is not None and item.get("status") == "open", item
        assert item["assignee"] == queue
    finally:
        await parts["directory"].load(DIRECTORY)


async def test_an_answer_the_run_could_not_read_is_refused_not_completed(
        parts: dict[str, Any]) -> None:
    """Regression: a value inside the form's limits but too deep for the outcome message
    was "Done"; the coordinator dead-lettered the outcome and the run stayed stuck."""
    _, item_id = await open_item(parts, "deep", AssigneeSpec(kind="user", value="cy"))
    value: Any = "deep"
    for _ in range(62):  # within the 64 levels on its own, past them inside the envelope
        value = {"n": value}
    outcome = await parts["guides"][0].act(item_id, cmd.Complete("cy", {"deep": value}),
                                           await parts["directory"].current())
    assert outcome.rejection is not None and outcome.rejection.code == "invalid"
    assert "cannot be sent to the run" in outcome.rejection.reason
    assert "nested more than 64 levels" in outcome.rejection.reason
    stored = item_of(await parts["guides"][0].store.get(item_id))
    assert stored is not None and stored.status == "open"


async def test_an_answer_crossing_the_run_cancel_is_withdrawn_and_its_author_told(
        parts: dict[str, Any], servers: Any) -> None:
    """Regression: the person was told "Done" and the item stayed completed while the run,
    canceled before the answer reached it, never used it."""
    run_id, item_id = await open_item(parts, "crossed", AssigneeSpec(kind="user", value="cy"))
    guide = parts["guides"][0]
    directory = await parts["directory"].current()
    done = await guide.act(item_id, cmd.Complete("cy", {"ok": True}), directory)
    assert done.item is not None and done.item.status == "completed"
    cancel = WorkItemCancelRequested(step="crossed", reason="the run was canceled")
    handler = DispatchHandler(guide.store, parts["directory"])
    await handler([new_event(cancel, producer="test", run_id=run_id)])

    item = item_of(await guide.store.get(item_id))
    assert item is not None and item.status == "canceled"
    assert item.cancel_reason == "your answer was not used: the run was canceled"
    again = await guide.act(item_id, cmd.Complete("cy", {"ok": True}), directory)
    assert again.rejection is not None and again.rejection.code == "conflict"
    assert "the run was canceled" in again.rejection.reason
    events = await topic_messages(servers.kafka_bootstrap, "workitems.events", run_id=run_id)
    told = [e["payload"] for e in events if e["type"] == "WorkItemCanceled"]
    assert [(t["recipients"], t["reason"]) for t in told] == [
        (["cy"], "your answer was not used: the run was canceled")]
