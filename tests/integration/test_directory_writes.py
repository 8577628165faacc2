"""Directory writes on the real MongoDB: one document under its revision, so racing writers
never lose each other's change; an inconsistent directory left by an older version is read
without failing anyone; an item waiting for the directory gets its assignee once it names
one."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from contracts.envelope import new_event
from contracts.events.workitems import AssigneeSpec, WorkItemRequested
from services.assignment.core import commands as cmd
from services.assignment.core.rejection import Rejection
from services.assignment.directory_store import DirectoryConflict, DirectoryStore
from services.assignment.guide import WorkGuide
from services.assignment.handler import DispatchHandler
from services.assignment.store import WorkItemStore, item_of
from shared.messaging import Publisher, make_broker
from shared.metrics import ServiceMetrics
from shared.mongo import make_client
from shared.settings import ServiceSettings
from shared.topics import ensure_topics, topics_of

pytestmark = pytest.mark.integration

PEOPLE = [f"p{i}" for i in range(8)]
DIRECTORY = {
    "users": [{"id": "ann", "roles": ["admin"]}, *({"id": p} for p in PEOPLE)],
    "queues": [{"id": "desk", "members": ["ann"]}],
}


@pytest.fixture
async def db(servers: Any) -> AsyncIterator[Any]:
    client = make_client(servers.mongodb_uri, app_name="directory-it")
    yield client[f"baton_dir_{uuid.uuid4().hex[:10]}"]
    await client.close()


@pytest.fixture(scope="module")
async def publisher(servers: Any) -> AsyncIterator[tuple[Publisher, ServiceMetrics]]:
    settings = ServiceSettings(service_name="directory-it",
                               kafka_bootstrap=servers.kafka_bootstrap,
                               mongodb_uri=servers.mongodb_uri)
    metrics = ServiceMetrics(CollectorRegistry(), "directory-it")
    # The topics the assignment service publishes to (its start-up would create them).
    await ensure_topics(servers.kafka_bootstrap, topics_of("assignment"))
    broker = make_broker(settings)
    await broker.connect()
    yield Publisher(broker, metrics), metrics
    await broker.stop()


async def test_racing_changes_to_different_people_all_land(db: Any) -> None:
    """Regression: each change rewrote the whole directory from a cached copy."""
    replicas = [DirectoryStore(db) for _ in range(3)]  # as three assignment replicas
    await replicas[0].load(DIRECTORY)
    results = await asyncio.gather(*(
        replicas[i % 3].change_user(person, {"out_of_office": True, "delegate": "ann"})
        for i, person in enumerate(PEOPLE)))
    landed = [p for p, r in zip(PEOPLE, results, strict=True) if not isinstance(r, Rejection)]
    # A change that cannot get through says so (409); one that is reported done is kept.
    assert all(r.code == "conflict" for r in results if isinstance(r, Rejection))
    assert len(landed) >= len(PEOPLE) // 2
    stored = await replicas[1].current(fresh=True)
    assert all(stored.users[p].out_of_office and stored.users[p].delegate == "ann"
               for p in landed)
    assert stored.revision == 1 + len(landed)  # each change one write, none lost


async def test_a_replace_on_an_old_revision_is_refused_and_the_change_between_kept(
        db: Any) -> None:
    admin, person = DirectoryStore(db), DirectoryStore(db)
    read = await admin.load(DIRECTORY)
    changed = await person.change_user("p1", {"out_of_office": True})
    assert not isinstance(changed, Rejection) and changed.revision == read.revision + 1
    edited = read.to_document()
    edited["users"].append({"id": "zed"})
    with pytest.raises(DirectoryConflict, match=f"changed since revision {read.revision}"):
        await admin.load(edited, revision=read.revision)
    stored = await admin.current(fresh=True)
    assert stored.users["p1"].out_of_office and "zed" not in stored.users
    # two replaces racing on the same revision: exactly one wins
    outcomes = await asyncio.gather(*(admin.load(edited, revision=stored.revision)
                                      for _ in range(4)), return_exceptions=True)
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
    assert all(isinstance(o, DirectoryConflict) for o in outcomes if isinstance(o, BaseException))


async def test_the_users_copy_for_notification_follows_each_change(db: Any) -> None:
    store = DirectoryStore(db)
    await store.load(DIRECTORY)
    await store.change_user("p2", {"channels": ["chat"]})
    await store.load({"users": [{"id": "ann", "email": "ann@example.com"}]})
    copies = {d["_id"]: d async for d in db.users.find({"removed": {"$ne": True}})}
    assert set(copies) == {"ann"} and copies["ann"]["email"] == "ann@example.com"
    assert copies["ann"]["directory_revision"] == 3


async def test_an_inconsistent_legacy_directory_is_read_without_what_is_broken(
        db: Any, publisher: tuple[Publisher, ServiceMetrics]) -> None:
    """Regression: a queue naming a removed user (sections written one by one) made every
    Work Guide call a 500, failed the timer job and dead-lettered new work items."""
    await db.users.insert_many([{"_id": "ann", "delegate": "gone"}, {"_id": "bo"}])
    await db.queues.insert_many([{"_id": "desk", "members": ["ann", "gone"]},
                                 {"_id": "night", "members": ["gone"]}])
    await db.groups.insert_one({"_id": "ops", "members": ["bo"], "colour": "red"})
    store = DirectoryStore(db)
    directory = await store.current()
    assert directory.queues["desk"].members == ("ann",)
    assert directory.users["ann"].delegate is None and "ops" not in directory.groups
    guide = WorkGuide(WorkItemStore(db, *publisher), store)
    assert await guide.fire_due_timers() == 0  # the timer job no longer fails

    handler = DispatchHandler(guide.store, store)
    run_id = uuid.uuid4().hex
    request = WorkItemRequested(orchestration="it", version=1, stage="s", step="night",
                                attempt=1, kind="interactive", title="Night shift",
                                assignee=AssigneeSpec(kind="queue", value="night"))
    await handler([new_event(request, producer="test", run_id=run_id)])
    item_id = f"{run_id}:night:1"
    waiting = item_of(await guide.store.get(item_id))
    assert waiting is not None and waiting.status == "waiting"
    assert waiting.waiting_reason == "queue 'night' has no members to work on it"
    assert await guide.assign_waiting() == 0  # nothing changed: it waits on

    repaired = (await store.current(fresh=True)).to_document()
    repaired["queues"] = [{"id": "desk", "members": ["ann"]}, {"id": "night",
                                                             "members": ["bo"]}]
    await store.load(repaired)
    assert await guide.assign_waiting() == 1
    item = item_of(await guide.store.get(item_id))
    assert item is not None and (item.status, item.assignee, item.recipients) == (
        "open", "night", ("bo",))
    done = await guide.act(item_id, cmd.Complete("bo", {}), await store.current())
    assert done.rejection is None and done.item is not None and done.item.status == "completed"


async def test_a_late_copy_of_the_users_never_overwrites_a_newer_one(db: Any) -> None:
    store = DirectoryStore(db)
    older = await store.load(DIRECTORY)
    newer = await store.load({"users": [{"id": "ann", "email": "new@example.com"}]})
    await store._copy_users(older)  # the first writer's copy, landing after the second's
    copies = {d["_id"]: d async for d in db.users.find({"removed": {"$ne": True}})}
    assert set(copies) == {"ann"} and copies["ann"]["email"] == "new@example.com"
    assert copies["ann"]["directory_revision"] == newer.revision
