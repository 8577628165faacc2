"""What one batch of the bench's run costs notification on the real MongoDB, counted.

The handler wired as the process wires it (real store and dispatcher), with channels and a
publisher that record what they are given.  Documents are counted as
``baton_mongodb_documents_written_total`` counts them (shared/mongo.py's CommandCounter).
"""

from __future__ import annotations

import collections
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from contracts import Envelope, new_event
from contracts.events.runs import RunCompleted, RunStarted, StageCompleted
from contracts.events.workitems import Contact, WorkItemAssigned, WorkItemClaimed, WorkItemCompleted
from services.notification.channels.base import ChannelError
from services.notification.core.model import Delivery, UserContact, delivery_id, fanout_id
from services.notification.core.retry import RetryPolicy
from services.notification.dispatch import Dispatcher
from services.notification.fanout import FanOut
from services.notification.handler import NotificationHandler
from services.notification.jobs import RetrySweeper
from services.notification.metrics import NotificationMetrics
from services.notification.store import DeliveryStore
from shared.mongo import CommandCounter, make_client

pytestmark = pytest.mark.integration


@dataclass
class Counted:
    commands: collections.Counter[str] = field(default_factory=collections.Counter)
    documents: collections.Counter[str] = field(default_factory=collections.Counter)

    def reset(self) -> None:
        self.commands.clear()
        self.documents.clear()


@dataclass
class RecordingChannel:
    """Sends nothing; keeps the delivery ids it was given, refusing the ``failing`` ones."""

    name: str = "email"
    sent: list[str] = field(default_factory=list)
    failing: dict[str, bool] = field(default_factory=dict)  # recipient -> retryable

    async def send(self, delivery: Delivery, contact: UserContact | None) -> None:
        if delivery.recipient in self.failing:
            raise ChannelError("mailbox busy", retryable=self.failing.pop(delivery.recipient))
        self.sent.append(delivery.id)


@dataclass
class RecordingPublisher:
    published: list[Envelope] = field(default_factory=list)

    async def publish(self, envelopes: Iterable[Envelope]) -> None:
        self.published.extend(envelopes)


@dataclass
class Notifier:
    handler: NotificationHandler
    sweeper: RetrySweeper
    store: DeliveryStore
    channel: RecordingChannel
    publisher: RecordingPublisher
    registry: CollectorRegistry


@pytest.fixture(scope="module")
async def counted_db(servers: Any, database: str) -> AsyncIterator[tuple[Any, Counted]]:
    counted = Counted()
    counter = CommandCounter(lambda name: counted.commands.update([name]),
                             lambda collection, n: counted.documents.update({collection: n}))
    client = make_client(servers.mongodb_uri, app_name="notification-writes",
                         listeners=[counter])
    yield client[database], counted
    await client.close()


@pytest.fixture
def notifier(counted_db: tuple[Any, Counted]) -> Notifier:
    db, counted = counted_db
    store = DeliveryStore(db, timedelta(seconds=60))
    channel, publisher = RecordingChannel(), RecordingPublisher()
    registry = CollectorRegistry()
    metrics = NotificationMetrics(registry)
    dispatcher = Dispatcher(store, {"email": channel}, RetryPolicy(base_delay_seconds=30),
                            metrics, concurrency=4)
    handler = NotificationHandler(store, dispatcher, FanOut(publisher),  # type: ignore[arg-type]
                                  metrics, operators=[], enabled={"email"})
    counted.reset()
    return Notifier(handler, RetrySweeper(store, dispatcher, metrics), store, channel,
                    publisher, registry)


def bench_run() -> list[Envelope]:
    """What notification consumes for one bench run: alice and bob each get an item and
    complete it, the run's starter ("bench") is not in the directory, no operators."""
    run_id = uuid.uuid4().hex

    def item(person: str, payload: type[Any], **extra: Any) -> Envelope:
        about = dict(work_item_id=f"wi-{person}-{run_id[:6]}", step=f"step-{person}",
                     title="Review", orchestration="bench", assignee_kind="user",
                     assignee=person,
                     contacts=[Contact(user=person, email=f"{person}@example.com")])
        return new_event(payload(**about, **extra), producer="assignment", run_id=run_id)

    def run(payload: Any) -> Envelope:
        return new_event(payload, producer="stage-coordinator", run_id=run_id)

    return [
        run(RunStarted(orchestration="bench", version=1)),
        item("alice", WorkItemAssigned, recipients=["alice"]),
        item("bob", WorkItemAssigned, recipients=["bob"]),
        item("alice", WorkItemClaimed, recipients=["alice"], actor="alice"),
        item("alice", WorkItemCompleted, recipients=["alice", "bench"], actor="alice"),
        item("bob", WorkItemCompleted, recipients=["bob", "bench"], actor="bob"),
        run(StageCompleted(orchestration="bench", version=1, stage="review")),
        run(RunCompleted(orchestration="bench", version=1)),
    ]


async def test_a_bench_run_writes_one_page_for_its_emails_and_fans_out_what_people_get(
    notifier: Notifier, counted_db: tuple[Any, Counted]
) -> None:
    _, counted = counted_db
    batch = bench_run()
    assigned = [e for e in batch if e.type == "WorkItemAssigned"]

    await notifier.handler(batch)

    emails = [delivery_id(e.event_id, e.payload.assignee, "email") for e in assigned]
    assert sorted(notifier.channel.sent) == sorted(emails)
    assert counted.documents == {"delivery_log": 1}  # one page for the batch (decision 23)
    assert counted.commands == {"find": 2, "insert": 1}  # the dedupe reads both collections
    page = await notifier.store.pages.find_one({"ids": emails[0]})
    assert sorted(page["ids"]) == sorted(emails)
    # The completions reach nobody (the actor is left out, "bench" has no contact), and
    # no operator is configured: only the two assignments are fanned out.
    assert [m.event_id for m in notifier.publisher.published] == [
        fanout_id(e.event_id) for e in assigned]
    stored = await notifier.store.search(recipient="alice", status="sent", limit=10)
    assert emails[0] in {d["id"] for d in stored}
    assert all("lease_until" not in d and d["attempts"] == 1 for d in stored)


async def test_a_redelivered_batch_writes_and_sends_nothing_and_fans_out_the_same_ids(
    notifier: Notifier, counted_db: tuple[Any, Counted]
) -> None:
    _, counted = counted_db
    batch = bench_run()
    await notifier.handler(batch)
    first = [m.event_id for m in notifier.publisher.published]
    counted.reset()

    await notifier.handler(batch)

    assert len(notifier.channel.sent) == 2  # from the first time only
    assert counted.documents == {} and counted.commands == {"find": 2}
    assert [m.event_id for m in notifier.publisher.published] == first * 2
    assert notifier.registry.get_sample_value("baton_notification_duplicates_total") == 2


async def test_a_failed_send_is_stored_once_pending_and_retried_by_the_sweep(
    notifier: Notifier, counted_db: tuple[Any, Counted]
) -> None:
    _, counted = counted_db
    notifier.channel.failing = {"alice": True, "bob": False}  # bob's address is refused
    batch = bench_run()
    alice, bob = (delivery_id(e.event_id, e.payload.assignee, "email")
                  for e in batch if e.type == "WorkItemAssigned")

    await notifier.handler(batch)

    assert notifier.channel.sent == []
    assert counted.documents == {"deliveries": 1, "delivery_log": 1}  # pending apart
    docs = {d["_id"]: d async for d in notifier.store.deliveries.find({"_id": {"$in": [alice,
                                                                                      bob]}})}
    page = await notifier.store.pages.find_one({"ids": bob})
    assert [(d["status"], d["attempts"]) for d in page["deliveries"]] == [("failed", 1)]
    assert list(docs) == [alice]
    assert docs[alice]["status"] == "pending" and docs[alice]["attempts"] == 1
    assert "lease_until" not in docs[alice]
    retry_at = docs[alice]["next_attempt_at"]
    assert retry_at > datetime.now(UTC) + timedelta(seconds=20)  # back-off, not at once

    notifier.sweeper.clock = lambda: retry_at + timedelta(seconds=1)
    await notifier.sweeper()

    assert notifier.channel.sent == [alice]
    retried = await notifier.store.deliveries.find_one({"_id": alice})
    assert retried["status"] == "sent" and retried["attempts"] == 2
    await notifier.sweeper()  # nothing is due any more
    assert notifier.channel.sent == [alice]
