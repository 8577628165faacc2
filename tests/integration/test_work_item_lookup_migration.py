"""Start-up on a work_items collection an older version wrote (decision 19): its six retired
indexes go, its items get their lookup keys in bounded batches, once, and show up in
"my work" and in their run's reads again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry
from pymongo import monitoring

from services.assignment import lookup
from services.assignment.core.workitem import Status, WorkItem
from services.assignment.store import (
    ACTIVE,
    INDEXES,
    MIGRATED,
    RETIRED_INDEXES,
    WORK_ITEMS,
    WorkItemStore,
    failed_document,
    next_document,
)
from shared.metrics import ServiceMetrics
from shared.mongo import ensure_indexes, make_client
from shared.spine.mongo_store import timers_index

pytestmark = pytest.mark.integration
NOW = datetime(2026, 12, 1, tzinfo=UTC)


class Writes(monitoring.CommandListener):
    """The statements each ``update`` command to ``work_items`` carries."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "update" and event.command.get("update") == "work_items":
            self.batches.append(len(event.command.get("updates", ())))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
async def old_collection(servers: Any, database: str) -> AsyncIterator[dict[str, Any]]:
    writes = Writes()
    client = make_client(servers.mongodb_uri, app_name="lookup-migration", listeners=[writes])
    db = client[database]
    for name in RETIRED_INDEXES:  # as the older version declared them
        fields = name.removesuffix("_1").split("_1_")
        await db.work_items.create_index([(f, 1) for f in fields], name=name)
    # Earlier versions created the timers' index at start-up too: it stays (decision 36).
    await ensure_indexes(db, [*INDEXES, timers_index(WORK_ITEMS)])
    store = WorkItemStore(db, cast(Any, None), ServiceMetrics(CollectorRegistry(), "it"))
    yield {"db": db, "store": store, "writes": writes}
    await client.close()


def old_document(name: str, **fields: Any) -> dict[str, Any]:
    """An item as the older version stored it: no lookup keys."""
    item = WorkItem(id=f"run-{name}:review:1", run_id=f"run-{name}", orchestration="old",
                    version=1, stage="s", step="review", attempt=1, kind="interactive",
                    title=name, due_at=NOW + timedelta(days=1), created_at=NOW, updated_at=NOW,
                    **fields)
    doc = next_document(None, item, published=[], now=NOW)
    del doc["lookup"]
    return doc


async def test_an_old_collection_is_brought_up_to_date_once(
    old_collection: dict[str, Any],
) -> None:
    db, store, writes = old_collection["db"], old_collection["store"], old_collection["writes"]
    olds = [old_document(f"ann-{i}", assignee_kind="user", assignee="ann") for i in range(5)]
    olds.append(old_document("pool", assignee_kind="queue", assignee="desk",
                             status=Status.CLAIMED, claimed_by="bo"))
    trace = failed_document(None, item_id="run-x:review:1", run_id="run-x", step="review",
                            attempt=1, error="no such user", published=[], now=NOW)
    del trace["lookup"]
    await db.work_items.insert_many([*olds, trace])
    assert await store.find(lookup.held_by(["user:ann"], ACTIVE), (), [("_id", 1)], 50) == []

    assert await store.migrate(batch=3) == 7
    assert writes.batches == [3, 3, 1]  # bounded batches
    indexes = set(await db.work_items.index_information())
    assert indexes == {"_id_", "lookup_1", "next_timer_at_1"}

    anns = await store.find(lookup.held_by(["user:ann"], ACTIVE), (), [("_id", 1)], 50)
    assert [d["title"] for d in anns] == [f"ann-{i}" for i in range(5)]
    bos = await store.find(lookup.held_by(["user:bo"], ["claimed"]), (), [("_id", 1)], 50)
    assert [d["title"] for d in bos] == ["pool"]
    runs = await store.of_runs(["run-x", "run-pool"])
    assert sorted(d["_id"] for d in runs) == ["run-pool:review:1", "run-x:review:1"]

    # Once: the next start drops nothing and writes nothing, even for a straggler.
    await db.work_items.insert_one(old_document("straggler", assignee_kind="user",
                                                assignee="ann"))
    assert await store.migrate(batch=3) == 0
    assert writes.batches == [3, 3, 1]
    assert await db.system.find_one({"_id": MIGRATED}) is not None
