"""Redelivery of everything: every topic replayed from the start into fresh consumers of all
five services changes no state and causes no side effect.

Runs of a small orchestration (an external call, a person's form, another call) finish
first; then a second process of every service joins with a new consumer group, so it
reads every topic from the beginning.  Runs, work items, step attempts, deliveries,
ledger calls and mails must be exactly as they were.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from e2e.conftest import ADMIN_TOKEN, wait_for
from receivers import MailSink, smtp_sink

from infra.stack import SERVICES, ServiceStack
from services.stage_coordinator.history import read_history

pytestmark = pytest.mark.e2e

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
DEFINITION = """
name: replayed
inputs:
  ledger_url: {type: string}
stages:
  - name: one
    steps:
      - name: call
        action: http
        inputs: {url: "${vars.ledger_url}/one", body: {run: "${run.id}"}}
  - name: two
    steps:
      - name: form
        kind: interactive
        title: Fill it in
        assignee: {user: pat}
  - name: three
    steps:
      - name: call_again
        action: http
        inputs: {url: "${vars.ledger_url}/three", body: {run: "${run.id}"}}
"""


@pytest.fixture(scope="module")
def ledger() -> Iterator[tuple[str, list[str]]]:
    calls: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            calls.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", calls
    server.shutdown()


@pytest.fixture(scope="module")
def mail() -> Iterator[tuple[MailSink, int]]:
    with smtp_sink() as sink_and_port:
        yield sink_and_port


@pytest.fixture(scope="module")
def stack_env(mail: tuple[MailSink, int]) -> dict[str, str]:
    return {"BATON_SMTP_HOST": "127.0.0.1", "BATON_SMTP_PORT": str(mail[1])}


async def snapshot(mongo: Any, run_ids: list[str]) -> dict[str, Any]:
    """What the services store about these runs, minus what says when a job last looked.

    Only this test's runs: the topics are shared by every test module of the session, so
    the replaying consumers also meet other modules' messages, which belong to other
    databases (in a deployment, one database goes with one cluster).
    """
    state: dict[str, Any] = {}
    for collection, key in (("runs", "_id"), ("work_items", "run_id"),
                            ("step_attempts", "run_id"), ("deliveries", "run_id")):
        docs = await mongo[collection].find({key: {"$in": run_ids}}).sort("_id", 1).to_list(None)
        for doc in docs:
            for volatile in ("timer_lease_until", "lease_until"):
                doc.pop(volatile, None)
        state[collection] = docs
    # A batch's finished deliveries are one page (decision 23): the pages holding these
    # runs' deliveries, as written.
    state["delivery_log"] = await mongo.delivery_log.find(
        {"deliveries.run_id": {"$in": run_ids}}).sort("_id", 1).to_list(None)
    state["definitions"] = await mongo.definitions.find({}).sort("_id", 1).to_list(None)
    # The history as read (pages and what waits in the run document), and the pages.
    state["run_history"] = [await read_history(mongo.run_history, run)
                            for run in state["runs"]]
    state["run_history_pages"] = await mongo.run_history.find(
        {"run_ids": {"$in": run_ids}}).sort("_id", 1).to_list(None)
    return state


def delivery_ids(state: dict[str, Any]) -> set[str]:
    """The ids of these runs' deliveries: pending ones and those in pages."""
    return {d["_id"] for d in state["deliveries"]} | {
        i for page in state["delivery_log"] for i in page["ids"]}


def ours(sink: MailSink, wanted: set[str]) -> list[str]:
    """The mails sent for this test's runs, by delivery id.

    Work-item events carry their recipients' contacts, so the replaying notification
    process also mails the people of other modules' runs (their events share the topics);
    those deliveries belong to other runs and are not this test's business.
    """
    sent = [BytesParser().parsebytes(m.content).get("X-Baton-Delivery-Id", "")
            for m in sink.messages]
    return sorted(i for i in sent if i in wanted)


async def consumed(client: httpx.AsyncClient, stack: ServiceStack, key: str) -> float:
    text = (await client.get(f"{stack.url(key)}/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("baton_messages_consumed_total{"))


async def test_replaying_every_topic_changes_nothing(
    stack: ServiceStack, mongo: Any, ledger: tuple[str, list[str]], mail: tuple[MailSink, int]
) -> None:
    ledger_url, calls = ledger
    guide = stack.url("assignment")
    async with httpx.AsyncClient(timeout=10) as client:
        await client.put(f"{guide}/directory", headers=ADMIN,
                         json={"users": [{"id": "pat", "email": "pat@example.com"}]})
        token = (await client.post(f"{guide}/tokens", headers=ADMIN,
                                   json={"user_id": "pat"})).json()["token"]
        pat = {"Authorization": f"Bearer {token}"}
        published = await client.post(f"{stack.url('trigger')}/definitions", headers=ADMIN,
                                      content=DEFINITION.encode())
        assert published.status_code == 201, published.text
        run_ids = []
        for _ in range(4):
            started = await client.post(f"{stack.url('trigger')}/runs", headers=ADMIN,
                                        json={"orchestration": "replayed",
                                              "inputs": {"ledger_url": ledger_url}})
            run_ids.append(started.json()["run_id"])

        async def items() -> list[dict[str, Any]]:
            found = (await client.get(f"{guide}/work", headers=pat)).json()
            return found if len(found) == len(run_ids) else []
        for item in await wait_for(items):
            done = await client.post(f"{guide}/work/{item['id']}/complete", headers=pat,
                                     json={"values": {"note": "ok"}})
            assert done.status_code == 200, done.text

        async def all_completed() -> bool:
            return await mongo.runs.count_documents(
                {"_id": {"$in": run_ids}, "status": "completed"}) == len(run_ids)
        await wait_for(all_completed)

        async def mails_settled() -> bool:
            return await mongo.deliveries.count_documents({"status": {"$ne": "sent"}}) == 0
        await wait_for(mails_settled)
        await asyncio.sleep(1.5)  # outbox sweeps and timers settle
        before = await snapshot(mongo, run_ids)
        calls_before = list(calls)
        mails_before = ours(mail[0], delivery_ids(before))
        assert sorted(calls_before) == sorted(["/one", "/three"] * len(run_ids))

        for name in SERVICES:
            stack.start_one(name, 1, env={"BATON_SERVICE_NAME": f"{name}-replay"})
        for name in SERVICES:
            stack.wait_healthy(f"{name}#1")

        async def replayed() -> bool:
            counts = [await consumed(client, stack, f"{n}#1") for n in SERVICES
                      if n != "trigger"]  # nothing upstream was published in this test
            await asyncio.sleep(2.0)
            again = [await consumed(client, stack, f"{n}#1") for n in SERVICES if n != "trigger"]
            return all(c > 0 for c in counts) and counts == again
        await wait_for(replayed, timeout=60)

    after = await snapshot(mongo, run_ids)
    for collection in before:
        assert json.dumps(after[collection], default=str, sort_keys=True) == json.dumps(
            before[collection], default=str, sort_keys=True), collection
    assert calls == calls_before
    assert ours(mail[0], delivery_ids(after)) == mails_before and mails_before
    assert all(len(before[c]) > 0 for c in ("runs", "work_items", "step_attempts",
                                            "delivery_log", "run_history_pages"))
    assert all(run_history for run_history in before["run_history"])
