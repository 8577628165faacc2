"""make chaos: the servers themselves go away mid-flight.

- MongoDB is killed and restarted on its data (SecantusDB keeps it on disk): the services
  reconnect and every run finishes, with each external call made for one attempt.
- The broker is killed and restarted, on its data (the normal case: consumers resume from
  their committed positions) and with its data wiped (a lost cluster: see
  docs/reliability.md for the reconcile; this test pins it down).

Each test starts its own embedded servers (it kills them), its own stack and ledger.
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e.conftest import TEST_STACK_ENV, wait_for
from pymongo import AsyncMongoClient

from infra.embedded import OWN_STORES, EmbeddedServers
from infra.stack import ServiceStack

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]

ADMIN = {"Authorization": "Bearer bt_chaos_servers"}
RUNS = 40
DEFINITION = """
name: steady
inputs:
  ledger_url: {type: string}
stages:
  - name: one
    steps:
      - name: first
        action: http
        inputs: {url: "${vars.ledger_url}/first", body: {run: "${run.id}"}}
        retries: {max_attempts: 30, backoff: 200ms, max_backoff: 2s}
  - name: two
    steps:
      - name: second
        action: http
        inputs: {url: "${vars.ledger_url}/second", body: {run: "${run.id}"}}
        retries: {max_attempts: 30, backoff: 200ms, max_backoff: 2s}
"""


@pytest.fixture
def ledger() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    calls: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            key = self.headers.get("Idempotency-Key", "")
            calls.append((f"{self.path}:{body.get('run')}", key))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", calls
    server.shutdown()


@pytest.fixture
def own_servers(tmp_path: Path) -> Iterator[EmbeddedServers]:
    # The stores as `make run` has them: the coordinator and assignment on their own.
    servers = EmbeddedServers(tmp_path / "servers", own_stores=OWN_STORES).start()
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def stack(own_servers: EmbeddedServers, tmp_path: Path) -> Iterator[ServiceStack]:
    env = {**own_servers.env(), "BATON_MONGODB_DATABASE": "baton_chaos",
           "BATON_ADMIN_TOKEN": ADMIN["Authorization"].split()[1], "BATON_LOG_FORMAT": "json",
           "BATON_TIMER_POLL_SECONDS": "0.5", "BATON_OUTBOX_SWEEP_SECONDS": "1",
           "BATON_DUE_MAX_SLEEP_SECONDS": "2",
           "BATON_BROKER_WATCH_SECONDS": "1", **TEST_STACK_ENV}
    stack = ServiceStack(env=env, log_dir=tmp_path / "logs",
                         service_env=own_servers.service_env())
    (tmp_path / "logs").mkdir()
    try:
        stack.start(timeout=90)
        yield stack
    finally:
        stack.stop()


@pytest.fixture
async def db(own_servers: EmbeddedServers) -> AsyncIterator[Any]:
    """The coordinator's database (the runs)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        own_servers.store_uri("stage-coordinator"), tz_aware=True)
    yield client["baton_chaos"]
    await client.close()


async def start_runs(stack: ServiceStack, ledger_url: str) -> list[str]:
    async with httpx.AsyncClient(timeout=10) as client:
        published = await client.post(f"{stack.url('trigger')}/definitions", headers=ADMIN,
                                      content=DEFINITION.encode())
        assert published.status_code == 201, published.text
        run_ids = []
        for _ in range(RUNS):
            started = await client.post(f"{stack.url('trigger')}/runs", headers=ADMIN,
                                        json={"orchestration": "steady",
                                              "inputs": {"ledger_url": ledger_url}})
            run_ids.append(started.json()["run_id"])
        return run_ids


async def finished(db: Any, run_ids: list[str], timeout: float) -> int:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while True:
        try:
            done = await db.runs.count_documents({"_id": {"$in": run_ids},
                                                  "status": "completed"})
        except Exception:  # the server may be restarting
            done = -1
        if done == len(run_ids) or time.monotonic() > deadline:
            return done
        await asyncio.sleep(0.5)


def effects(calls: list[tuple[str, str]]) -> dict[str, set[str]]:
    by_effect: dict[str, set[str]] = collections.defaultdict(set)
    for effect, key in calls:
        by_effect[effect].add(key)
    return by_effect


async def test_mongodb_killed_and_restarted_mid_flight(
    own_servers: EmbeddedServers, stack: ServiceStack, db: Any,
    ledger: tuple[str, list[tuple[str, str]]],
) -> None:
    url, calls = ledger
    start = asyncio.create_task(start_runs(stack, url))
    await asyncio.sleep(1.0)
    own_servers.kill_mongo()  # every store at once
    await asyncio.sleep(3.0)
    await asyncio.to_thread(own_servers.start_mongo)
    run_ids = await start
    done = await finished(db, run_ids, timeout=120)
    assert done == RUNS, f"{done} of {RUNS} runs completed after MongoDB came back"
    by_effect = effects(calls)
    assert len(by_effect) == 2 * RUNS
    assert all(len(keys) == 1 for keys in by_effect.values()), {
        e: k for e, k in by_effect.items() if len(k) > 1}
    for key in stack.procs:
        assert stack.procs[key].poll() is None, f"{key} died"


PEOPLE = """
name: with-people
inputs:
  ledger_url: {type: string}
stages:
  - name: one
    steps:
      - name: first
        action: http
        inputs: {url: "${vars.ledger_url}/first", body: {run: "${run.id}"}}
        retries: {max_attempts: 30, backoff: 200ms, max_backoff: 2s}
  - name: two
    steps:
      - name: review
        kind: interactive
        title: Review
        assignee: {user: pat}
  - name: three
    steps:
      - name: second
        action: http
        inputs: {url: "${vars.ledger_url}/second", body: {run: "${run.id}"}}
        retries: {max_attempts: 30, backoff: 200ms, max_backoff: 2s}
"""


async def reviewer(stack: ServiceStack, stop: asyncio.Event,
                   begin: asyncio.Event | None = None) -> None:
    """Pat completes whatever is assigned (once ``begin`` is set), shrugging off the
    broker's absence."""
    async with httpx.AsyncClient(timeout=10) as client:
        guide = stack.url("assignment")
        await client.put(f"{guide}/directory", headers=ADMIN,
                         json={"users": [{"id": "pat", "email": "pat@example.com"}]})
        issued = await client.post(f"{guide}/tokens", headers=ADMIN, json={"user_id": "pat"})
        pat = {"Authorization": f"Bearer {issued.json()['token']}"}
        if begin is not None:
            await begin.wait()
        while not stop.is_set():
            try:
                for item in (await client.get(f"{guide}/work", headers=pat)).json():
                    await client.post(f"{guide}/work/{item['id']}/complete", headers=pat,
                                      json={"values": {"ok": True}})
            except (httpx.HTTPError, ValueError, TypeError):
                pass
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("data", ["kept", "wiped"])
async def test_broker_restarted_mid_flight(
    own_servers: EmbeddedServers, stack: ServiceStack, db: Any,
    ledger: tuple[str, list[tuple[str, str]]], data: str,
) -> None:
    """Kept: consumers resume where they were.  Wiped: the reconcile re-sends starts,
    dispatches and outboxes.  Either way every run finishes, each effect once."""
    url, calls = ledger
    stop, begin = asyncio.Event(), asyncio.Event()
    # Pat waits for the broker's return: at the kill every run is in flight (its first
    # call made or on its way, its work item waiting), however fast the stack is.
    person = asyncio.create_task(reviewer(stack, stop, begin))
    async with httpx.AsyncClient(timeout=10) as client:
        published = await client.post(f"{stack.url('trigger')}/definitions", headers=ADMIN,
                                      content=PEOPLE.encode())
        assert published.status_code == 201, published.text
        run_ids = []
        for _ in range(RUNS):
            started = await client.post(f"{stack.url('trigger')}/runs", headers=ADMIN,
                                        json={"orchestration": "with-people",
                                              "inputs": {"ledger_url": url}})
            run_ids.append(started.json()["run_id"])
    await asyncio.sleep(1.0)  # runs in stage one, or waiting on Pat in stage two
    assert await db.runs.count_documents({"_id": {"$in": run_ids},
                                          "status": "completed"}) == 0
    own_servers.kill_one("kafka")
    if data == "wiped":
        own_servers.wipe_kafka()
    await asyncio.sleep(2.0)
    await asyncio.to_thread(own_servers.start_kafka)
    begin.set()
    done = await finished(db, run_ids, timeout=120)
    stop.set()
    await person
    stuck = await db.runs.find({"_id": {"$in": run_ids}, "status": {"$ne": "completed"}},
                               {"status": 1, "stage": 1, "active_steps": 1}).to_list(None)
    missing = set(run_ids) - {r["_id"] for r in await db.runs.find(
        {"_id": {"$in": run_ids}}, {"_id": 1}).to_list(None)}
    assert done == RUNS, (f"{done} of {RUNS} runs completed after the broker came back empty; "
                          f"never created: {len(missing)}; unfinished: {stuck}")
    by_effect = effects(calls)
    assert len(by_effect) == 2 * RUNS
    assert all(len(keys) == 1 for keys in by_effect.values())
    shared: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(own_servers.mongodb_uri)
    broker = shared["baton_chaos"].system
    try:
        if data == "kept":
            system = await broker.find_one({"_id": "broker"}) or {}
            assert system.get("epoch", 0) == 0, "a broker that kept its data is no loss"
            return

        async def lost_and_reconciled() -> dict[str, Any] | None:
            """The loss recorded and reconciled by each service (on its own watch's turn,
            which may come after the last run finished)."""
            system = await broker.find_one({"_id": "broker"}) or {}
            reconciled = set(system.get("reconciled") or ())
            done = system.get("epoch", 0) >= 1 and reconciled >= {
                "trigger", "stage-coordinator", "assignment"}
            return system if done else None

        await wait_for(lost_and_reconciled, timeout=60)
    finally:
        await shared.close()
