"""make chaos: many concurrent runs while services are killed with SIGKILL and restarted.

Each run: a background step that calls an external ledger, an interactive step that a
simulated person completes through the Work Guide API, and a second ledger call.  A
killer picks a service (and a replica) at random, kills it at a random moment and
restarts it.  Afterwards every run must have completed; each ledger effect happened for
one step attempt only; each notification reached its recipient once; no work item exists
twice.  The figures are printed (pytest -s) and appended to .baton/chaos-figures.jsonl.

Settings (environment): BATON_CHAOS_RUNS (default 120), BATON_CHAOS_SECONDS (how long
the killing goes on at most, default 60).
"""

from __future__ import annotations

import asyncio
import collections
import email
import json
import os
import random
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from e2e.conftest import ROOT, TEST_STACK_ENV
from pymongo import AsyncMongoClient
from receivers import MailSink, smtp_sink

from infra.stack import SERVICES, ServiceStack

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1200)]

ADMIN_TOKEN = "bt_chaos_admin"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
RUNS = int(os.environ.get("BATON_CHAOS_RUNS", "120"))
CHAOS_SECONDS = float(os.environ.get("BATON_CHAOS_SECONDS", "60"))
DEFINITION = """
name: chaos-onboarding
inputs:
  ledger_url: {type: string}
stages:
  - name: prepare
    steps:
      - name: open_account
        action: http
        inputs:
          url: "${vars.ledger_url}/open"
          body: {run: "${run.id}"}
        timeout: 20s
        retries: {max_attempts: 20, backoff: 200ms, max_backoff: 2s}
  - name: review
    steps:
      - name: check
        kind: interactive
        title: Check the new account
        assignee: {queue: reviewers}
        form: {type: object, required: [ok], properties: {ok: {type: boolean}}}
  - name: finish
    steps:
      - name: close_account
        action: http
        inputs:
          url: "${vars.ledger_url}/close"
          body: {run: "${run.id}", ok: "${steps.check.outputs.ok}"}
        timeout: 20s
        retries: {max_attempts: 20, backoff: 200ms, max_backoff: 2s}
"""
DIRECTORY = {
    "users": [{"id": "rev1", "email": "rev1@example.com", "queues": ["reviewers"]},
              {"id": "rev2", "email": "rev2@example.com", "queues": ["reviewers"]}],
    "queues": [{"id": "reviewers", "members": ["rev1", "rev2"]}],
}


@dataclass
class Ledger:
    """The external system the background steps change: it records every call."""

    url: str = ""
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (path, run, key)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, path: str, run: str, key: str) -> None:
        with self.lock:
            self.calls.append((path, run, key))


@pytest.fixture(scope="module")
def ledger() -> Iterator[Ledger]:
    book = Ledger()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            book.record(self.path, str(body.get("run")), self.headers.get("Idempotency-Key", ""))
            answer = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    book.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield book
    server.shutdown()


@pytest.fixture(scope="module")
def mail() -> Iterator[tuple[MailSink, int]]:
    with smtp_sink() as sink_and_port:
        yield sink_and_port


@pytest.fixture(params=[1, 2], ids=["1-replica", "2-replicas"])
def stack(request: pytest.FixtureRequest, servers: Any, mail: tuple[MailSink, int],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceStack, int, str]]:
    database = f"baton_chaos_{uuid.uuid4().hex[:8]}"
    replicas: int = request.param
    env = {**servers.env(database), "BATON_ADMIN_TOKEN": ADMIN_TOKEN, "BATON_LOG_FORMAT": "json",
           "BATON_TIMER_POLL_SECONDS": "0.5", "BATON_OUTBOX_SWEEP_SECONDS": "1",
           "BATON_SMTP_HOST": "127.0.0.1", "BATON_SMTP_PORT": str(mail[1]),
           "BATON_LEASE_SECONDS": "5", "BATON_RETRY_BASE_DELAY_SECONDS": "0.5",
           "BATON_DUE_MAX_SLEEP_SECONDS": "2", "BATON_CONSUMER_SESSION_TIMEOUT_MS": "6000",
           **TEST_STACK_ENV}
    stack = ServiceStack(env=env, log_dir=tmp_path_factory.mktemp("chaos-logs"))
    try:
        stack.start(timeout=90)
        for name in SERVICES:
            for replica in range(1, replicas):
                stack.start_one(name, replica)
                stack.wait_healthy(f"{name}#{replica}")
        yield stack, replicas, database
    finally:
        stack.stop()


@dataclass
class Figures:
    replicas: int
    runs: int
    kills: int = 0
    completed: int = 0
    lost: int = 0
    duplicate_effects: int = 0
    redundant_calls: int = 0
    notifications: int = 0
    duplicate_notifications: int = 0
    resent_copies: int = 0
    duplicate_work_items: int = 0
    seconds: float = 0.0


async def start_runs(client: httpx.AsyncClient, stack: ServiceStack, ledger: Ledger) -> list[str]:
    """Start every run, retrying each with its idempotency key until the trigger answers."""
    run_ids: list[str] = []
    for i in range(RUNS):
        key = f"chaos-{uuid.uuid4().hex}-{i}"
        while True:
            try:
                answer = await client.post(
                    f"{stack.url('trigger')}/runs", headers={**ADMIN, "Idempotency-Key": key},
                    json={"orchestration": "chaos-onboarding",
                          "inputs": {"ledger_url": ledger.url}})
                if answer.status_code == 202:
                    run_ids.append(answer.json()["run_id"])
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    return run_ids


async def person(client: httpx.AsyncClient, stack: ServiceStack, token: dict[str, str],
                 stop: asyncio.Event) -> int:
    """A reviewer completing whatever reaches the queue, shrugging off outages."""
    done = 0
    while not stop.is_set():
        try:
            answer = await client.get(f"{stack.url('assignment')}/work", headers=token,
                                      params={"limit": "100"})
            items = answer.json() if answer.status_code == 200 else []
            for item in items:
                result = await client.post(
                    f"{stack.url('assignment')}/work/{item['id']}/complete", headers=token,
                    json={"values": {"ok": True}})
                done += result.status_code == 200
        except (httpx.HTTPError, ValueError):
            pass
        await asyncio.sleep(0.2)
    return done


async def killer(stack: ServiceStack, replicas: int, stop: asyncio.Event,
                 rng: random.Random) -> int:
    kills = 0
    deadline = time.monotonic() + CHAOS_SECONDS
    while not stop.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(rng.uniform(0.5, 2.0))
        name = rng.choice(list(SERVICES))
        replica = rng.randrange(replicas)
        key = name if replica == 0 else f"{name}#{replica}"
        stack.kill_one(key)
        kills += 1
        await asyncio.sleep(rng.uniform(0.1, 1.0))
        stack.start_one(name, replica)
        await asyncio.to_thread(stack.wait_healthy, key, timeout=90)
    return kills


@pytest.fixture
async def db(servers: Any, stack: tuple[ServiceStack, int, str]) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(servers.mongodb_uri, tz_aware=True)
    yield client[stack[2]]
    await client.close()


async def test_runs_survive_services_killed_at_random(
    stack: tuple[ServiceStack, int, str], ledger: Ledger, mail: tuple[MailSink, int], db: Any
) -> None:
    services, replicas, _ = stack
    figures = Figures(replicas=replicas, runs=RUNS)
    began = time.monotonic()
    rng = random.Random(int(os.environ.get("BATON_CHAOS_SEED", str(time.time_ns()))))
    async with httpx.AsyncClient(timeout=10) as client:
        loaded = await client.put(f"{services.url('assignment')}/directory", json=DIRECTORY,
                                  headers=ADMIN)
        assert loaded.status_code == 200, loaded.text
        published = await client.post(f"{services.url('trigger')}/definitions", headers=ADMIN,
                                      content=DEFINITION.encode())
        assert published.status_code == 201, published.text
        tokens = []
        for user in ("rev1", "rev2"):
            issued = await client.post(f"{services.url('assignment')}/tokens", headers=ADMIN,
                                       json={"user_id": user})
            tokens.append({"Authorization": f"Bearer {issued.json()['token']}"})

        stop = asyncio.Event()
        kill_task = asyncio.create_task(killer(services, replicas, stop, rng))
        people = [asyncio.create_task(person(client, services, t, stop)) for t in tokens]
        run_ids = await start_runs(client, services, ledger)

        async def unfinished() -> int:
            return await db.runs.count_documents({"_id": {"$in": run_ids},
                                                  "status": {"$ne": "completed"}})
        deadline = time.monotonic() + CHAOS_SECONDS + 240
        while await unfinished() and time.monotonic() < deadline:
            if kill_task.done() and time.monotonic() > deadline - 200:
                break
            await asyncio.sleep(1)
        figures.kills = await kill_task
        # Everything up again; the runs must now finish on their own.
        settle = time.monotonic() + 180
        while await unfinished() and time.monotonic() < settle:  # noqa: ASYNC110 (polling Mongo)
            await asyncio.sleep(1)
        stop.set()
        await asyncio.gather(*people)

    figures.completed = await db.runs.count_documents({"_id": {"$in": run_ids},
                                                       "status": "completed"})
    figures.lost = RUNS - figures.completed
    figures.seconds = round(time.monotonic() - began, 1)

    calls = [(path, run, key) for path, run, key in ledger.calls if run in set(run_ids)]
    attempts_per_effect: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
    for path, run, key in calls:
        attempts_per_effect[(path, run)].add(key)
    figures.duplicate_effects = sum(len(keys) - 1 for keys in attempts_per_effect.values())
    figures.redundant_calls = len(calls) - sum(len(k) for k in attempts_per_effect.values())

    items = await db.work_items.find({"run_id": {"$in": run_ids}, "status": {"$exists": True}},
                                     {"run_id": 1, "step": 1, "status": 1}).to_list(None)
    per_step = collections.Counter((i["run_id"], i["step"]) for i in items
                                   if i["status"] == "completed")
    figures.duplicate_work_items = sum(n - 1 for n in per_step.values() if n > 1)

    # A mailbox shows one message per Message-ID (stable per delivery); a copy sent again
    # after a kill between the server's 250 and the recorded outcome is counted apart.
    sink = mail[0]
    copies: collections.Counter[tuple[str, str]] = collections.Counter()
    message_ids: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
    for envelope in sink.messages:
        message = email.message_from_bytes(envelope.content)
        for rcpt in envelope.rcpt_tos:
            key = (str(message["X-Baton-Event-Id"]), rcpt)
            copies[key] += 1
            message_ids[key].add(str(message["Message-ID"]))
    figures.notifications = len(message_ids)
    figures.duplicate_notifications = sum(len(ids) - 1 for ids in message_ids.values())
    figures.resent_copies = sum(n - 1 for n in copies.values())

    print("\nchaos figures:", json.dumps(figures.__dict__))
    out = ROOT / ".baton" / "chaos-figures.jsonl"
    out.parent.mkdir(exist_ok=True)
    with out.open("a") as handle:
        handle.write(json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%S"), **figures.__dict__})
                     + "\n")

    assert figures.lost == 0, figures
    assert len({run for _, run in attempts_per_effect}) == RUNS, "a run lost a ledger effect"
    assert all(len({p for p, r in attempts_per_effect if r == run}) == 2 for run in run_ids)
    assert figures.duplicate_effects == 0, figures
    assert figures.duplicate_work_items == 0, figures
    assert figures.duplicate_notifications == 0, figures
