"""The notification process on the real Kafka and MongoDB, with a real SMTP server and webhook.

One ``python -m services.notification`` for the module; each test uses its own event ids
and recipients, so the tests do not see each other's mail.
"""

from __future__ import annotations

import asyncio
import email
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiosmtpd.controller import Controller
from pymongo import AsyncMongoClient
from receivers import serving

from contracts import Envelope, encode, headers_of, new_event
from contracts.events.runs import RunErrored
from contracts.events.workitems import Contact, WorkItemAssigned
from infra.processes import free_port
from infra.stack import ServiceStack
from services.notification.core.model import Delivery, delivery_id, fanout_id
from services.notification.store import to_document

pytestmark = pytest.mark.integration

ADMIN_TOKEN = "bt_notification_test_admin"
# How assignment's events say to reach people (notification reads no directory).
CONTACTS = {
    "alice": Contact(user="alice", email="alice@example.com", chat_handle="@alice",
                     channels=["email", "chat"]),
    "bob": Contact(user="bob", email="bob@example.com"),  # email by default
    "flaky": Contact(user="flaky", chat_handle="@flaky", channels=["chat"]),
}


@dataclass
class Mailbox:
    """An aiosmtpd handler keeping every message it accepted."""

    port: int = 0
    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"

    def about(self, event_id: str) -> list[Message]:
        return [m for m in self.messages if m["X-Baton-Event-Id"] == event_id]


@dataclass
class Webhook:
    """Answers 500 to the first POST of each message for a ``flaky_channels`` handle."""

    url: str = ""
    flaky_channels: set[str] = field(default_factory=lambda: {"@flaky"})
    requests: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)

    def answer(self, key: str, body: dict[str, Any]) -> int:
        seen = any(k == key for _, k, _ in self.requests)
        status = 500 if body.get("channel") in self.flaky_channels and not seen else 200
        self.requests.append((status, key, body))
        return status

    def about(self, key: str) -> list[int]:
        return [status for status, k, _ in self.requests if k == key]


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox(port=free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    hook = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            status = hook.answer(self.headers.get("Idempotency-Key", ""), body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(Handler) as base:
        hook.url = f"{base}/hooks/chat"
        yield hook


@pytest.fixture(scope="module")
async def mongo(servers: Any, database: str) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(servers.mongodb_uri, tz_aware=True)
    yield client[database]
    await client.close()


@pytest.fixture(scope="module")
def service(
    servers: Any, database: str, mongo: Any, mailbox: Mailbox, webhook: Webhook,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceStack]:
    env = {
        **servers.env(database),
        # its own consumer group: other modules' notification services keep their offsets
        "BATON_SERVICE_NAME": f"notification-test-{uuid.uuid4().hex[:8]}",
        "BATON_SMTP_HOST": "127.0.0.1", "BATON_SMTP_PORT": str(mailbox.port),
        "BATON_SMTP_SENDER": "Baton <baton@baton.test>",
        "BATON_CHAT_WEBHOOK_URL": webhook.url, "BATON_OPERATORS": "ops=ops@example.com",
        # Deliveries these tests store behind the service's back (as a crashed replica
        # would leave them) are found within the retry sweep's longest sleep.
        "BATON_RETRY_BASE_DELAY_SECONDS": "0.3", "BATON_DUE_MAX_SLEEP_SECONDS": "1",
        "BATON_MAX_ATTEMPTS": "4", "BATON_ADMIN_TOKEN": ADMIN_TOKEN,
        "BATON_CONSUMER_SESSION_TIMEOUT_MS": "2000", "BATON_LOG_FORMAT": "text",
    }
    stack = ServiceStack(env=env, log_dir=tmp_path_factory.mktemp("notification-logs"),
                         names=("notification",))
    try:
        stack.start(timeout=60)
        yield stack
    finally:
        stack.stop()


async def publish(bootstrap: str, *envelopes: Envelope) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for envelope in envelopes:
            headers = [(k, v.encode()) for k, v in headers_of(envelope).items()]
            await producer.send_and_wait(envelope.payload.TOPIC, encode(envelope),
                                         key=envelope.partition_key.encode(), headers=headers)
    finally:
        await producer.stop()


async def notifications_sent(bootstrap: str) -> list[dict[str, Any]]:
    """Every NotificationSent on the topic so far, repeats included."""
    consumer = AIOKafkaConsumer("notifications", bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        found: list[dict[str, Any]] = []
        while batch := await consumer.getmany(timeout_ms=1000):
            for records in batch.values():
                found.extend(json.loads(record.value) for record in records)
        return found
    finally:
        await consumer.stop()


async def wait_for(check: Callable[[], Awaitable[Any] | Any], what: str, *,
                   stack: ServiceStack, within: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not within {within:.0f}s; log:\n{_log_tail(stack)}")
        await asyncio.sleep(0.2)


def _log_tail(stack: ServiceStack) -> str:
    return Path(stack.log_dir, "notification.log").read_text()[-3000:]


def assigned(recipients: list[str], run_id: str, title: str = "Fill the HR form") -> Envelope:
    payload = WorkItemAssigned(
        work_item_id=f"wi-{uuid.uuid4().hex[:6]}", step="hr_form", title=title,
        orchestration="onboarding", assignee_kind="user", assignee=recipients[0],
        recipients=recipients, contacts=[CONTACTS[r] for r in recipients if r in CONTACTS],
    )
    return new_event(payload, producer="assignment", run_id=run_id)


async def test_assigned_work_item_is_mailed_chatted_and_fanned_out_under_one_id(
    service: ServiceStack, servers: Any, mongo: Any, mailbox: Mailbox, webhook: Webhook
) -> None:
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    event = assigned(["alice", "bob", "no-contact-on-the-event"], run_id)
    await publish(servers.kafka_bootstrap, event)

    await wait_for(lambda: len(mailbox.about(event.event_id)) == 2, "two emails", stack=service)
    chat_key = delivery_id(event.event_id, "alice", "chat")
    await wait_for(lambda: webhook.about(chat_key) == [200], "the chat message", stack=service)
    fanned_out = fanout_id(event.event_id)
    sent = await wait_for(lambda: _sent(servers, fanned_out), "NotificationSent", stack=service)
    assert sent["type"] == "NotificationSent" and sent["run_id"] == run_id
    assert sent["payload"]["source_event_id"] == event.event_id
    assert sent["payload"]["subject"] == "New work item: Fill the HR form"
    mail_to_alice = next(m for m in mailbox.about(event.event_id) if m["To"] == "alice@example.com")
    email_id = delivery_id(event.event_id, "alice", "email")
    assert mail_to_alice["Message-ID"] == f"<{email_id}@baton.test>"
    assert mail_to_alice["Subject"] == "New work item: Fill the HR form"

    # The same envelope again, then a fresh one on the same partition: once the fresh one
    # is mailed, the duplicate has been consumed too, and it must have sent nothing to
    # anyone; its fan-out is published again under the same event id (consumers drop it).
    later = assigned(["bob"], run_id, title="Sign the contract")
    await publish(servers.kafka_bootstrap, event, later)
    await wait_for(lambda: len(mailbox.about(later.event_id)) == 1, "the later email",
                   stack=service)
    assert len(mailbox.about(event.event_id)) == 2
    assert webhook.about(chat_key) == [200]
    stored = await stored_about(mongo, event.event_id)
    assert sorted((d["recipient"], d["channel"], d["status"], d["attempts"]) for d in stored) == [
        ("alice", "chat", "sent", 1), ("alice", "email", "sent", 1), ("bob", "email", "sent", 1),
    ]  # the fan-out stores nothing
    later_fanout = fanout_id(later.event_id)
    await wait_for(lambda: _sent(servers, later_fanout), "the later fan-out", stack=service)
    published = [m["event_id"] for m in await notifications_sent(servers.kafka_bootstrap)]
    assert published.count(fanned_out) == 2 and published.count(later_fanout) == 1


async def test_webhook_answering_500_is_retried_and_delivered_once(
    service: ServiceStack, servers: Any, mongo: Any, webhook: Webhook
) -> None:
    event = assigned(["flaky"], f"run-{uuid.uuid4().hex[:8]}")
    await publish(servers.kafka_bootstrap, event)

    key = delivery_id(event.event_id, "flaky", "chat")
    await wait_for(lambda: webhook.about(key) == [500, 200], "a retried chat", stack=service)

    async def recorded() -> dict[str, Any] | None:
        doc = await mongo.deliveries.find_one({"_id": key})
        return doc if doc and doc["status"] == "sent" else None

    doc = await wait_for(recorded, "the delivery recorded as sent", stack=service)
    assert doc["attempts"] == 2 and doc["last_error"] is None
    await asyncio.sleep(1.0)  # several retry sweeps: none may send it again
    assert webhook.about(key) == [500, 200]


async def test_run_error_reaches_operators_and_admins_can_list_deliveries(
    service: ServiceStack, servers: Any, mailbox: Mailbox
) -> None:
    event = new_event(
        RunErrored(orchestration="onboarding", version=3, stage="it", step="laptop",
                   error="vendor API down"),
        producer="stage-coordinator", run_id=f"run-{uuid.uuid4().hex[:8]}",
    )
    await publish(servers.kafka_bootstrap, event)
    await wait_for(lambda: mailbox.about(event.event_id), "the operator email", stack=service)
    assert mailbox.about(event.event_id)[0]["To"] == "ops@example.com"

    url = f"{service.url('notification')}/deliveries"
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(url)).status_code == 401
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        response = await client.get(url, params={"recipient": "ops", "status": "sent"},
                                    headers=admin)
        assert response.status_code == 200, response.text
        listed = {d["source_event_id"]: d for d in response.json()}
        assert listed[event.event_id]["channel"] == "email"
        metrics = (await client.get(f"{service.url('notification')}/metrics")).text
    assert 'baton_notifications_total{channel="email",outcome="sent"}' in metrics
    assert "baton_notification_pending" in metrics


async def stored_about(mongo: Any, source_event_id: str) -> list[dict[str, Any]]:
    """The deliveries stored for one event: its batch's page (decision 23) and any pending."""
    pages = await mongo.delivery_log.find(
        {"deliveries.source_event_id": source_event_id}).to_list(None)
    logged = [d for page in pages for d in page["deliveries"]
              if d["source_event_id"] == source_event_id]
    return [*logged, *await mongo.deliveries.find(
        {"source_event_id": source_event_id}).to_list(None)]


async def _sent(servers: Any, event_id: str) -> dict[str, Any] | None:
    found = await notifications_sent(servers.kafka_bootstrap)
    return next((m for m in found if m["event_id"] == event_id), None)


async def test_two_replicas_sweeping_send_each_due_delivery_once_even_after_a_crash(
    service: ServiceStack, mongo: Any, mailbox: Mailbox
) -> None:
    """Deliveries stored but never sent (a crashed handler), and one whose sender died
    holding a lease: both replicas sweep, each mail goes out once, the leased one later."""
    service.start_one("notification", replica=1)
    try:
        await asyncio.to_thread(service.wait_healthy, "notification#1", timeout=30)
        now = datetime.now(UTC)
        source = f"crashed-{uuid.uuid4().hex[:8]}"
        orphans = [_stored_delivery(source, f"orphan-{i}", now) for i in range(12)]
        leased = {**_stored_delivery(source, "leased", now),
                  "lease_until": now + timedelta(seconds=2), "lease_token": "dead-replica"}
        await mongo.deliveries.insert_many([*orphans, leased])

        await wait_for(lambda: len(mailbox.about(source)) >= 12, "the orphans", stack=service)
        assert all(m["To"] != "leased@example.com" for m in mailbox.about(source))
        await wait_for(lambda: len(mailbox.about(source)) == 13, "the leased one", stack=service)
        await asyncio.sleep(1.0)  # more sweeps by both replicas: nothing is sent twice
        recipients = sorted(m["To"] for m in mailbox.about(source))
        assert recipients == sorted(f"{d['recipient']}@example.com" for d in [*orphans, leased])
    finally:
        service.stop_one("notification#1")


def _stored_delivery(source: str, recipient: str, now: datetime) -> dict[str, Any]:
    return to_document(Delivery(
        id=delivery_id(source, recipient, "email"), source_event_id=source,
        source_type="WorkItemAssigned", recipient=recipient, channel="email",
        template="work_item_assigned", subject="Orphaned", body="stored, never sent",
        next_attempt_at=now, created_at=now, address=f"{recipient}@example.com",
    ))
