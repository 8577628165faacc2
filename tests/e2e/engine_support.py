"""Helpers for the engine e2e modules (tests/e2e/test_engine_*.py).

A scripted local HTTP server for the http action, publishing inline definitions,
starting runs, waiting for a run's status, sending record changes and reading a topic
to its current end (no idle timeout to wait out).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from e2e.conftest import wait_for

from contracts import Envelope, encode, new_event
from contracts.events.records import RecordChanged
from contracts.topics import TOPICS
from services.stage_coordinator.history import read_history
from services.stage_coordinator.store import unpacked

FINAL = ("completed", "canceled", "error")


# --- a scripted HTTP server ----------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=lambda: {"ok": True})
    delay: float = 0.0
    gate: threading.Event | None = None  # answer only once the test opens it (60 s at most)


@dataclass
class Received:
    path: str
    method: str
    headers: dict[str, str]
    body: Any
    started: float
    finished: float = 0.0


class ScriptedServer:
    """Each path answers from its script: the replies in order, the last one repeated."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Reply]] = {}
        self.received: list[Received] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                started = time.time()
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                path = self.path.split("?", 1)[0]
                headers = {k.lower(): v for k, v in self.headers.items()}
                entry = Received(path, self.command, headers, body, started)
                with server.lock:
                    server.received.append(entry)
                    script = server.scripts.get(path) or [Reply(404, {"error": "no script"})]
                    reply = script.pop(0) if len(script) > 1 else script[0]
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.gate is not None:
                    reply.gate.wait(timeout=60)
                data = json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.send_header("x-served-by", "scripted")
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (a step timeout)
                entry.finished = time.time()

            do_GET = do_POST = do_PUT = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def script(self, *replies: Reply) -> str:
        """A fresh path answering with these replies; returns its absolute URL."""
        path = f"/{uuid.uuid4().hex[:12]}"
        self.scripts[path] = list(replies) or [Reply()]
        return self.base + path

    def calls(self, url: str) -> list[Received]:
        path = url.removeprefix(self.base)
        with self.lock:
            return [r for r in self.received if r.path == path]


def serve_scripted() -> Iterator[ScriptedServer]:
    """Body of each module's ``http_server`` fixture: a server for the module's tests."""
    server = ScriptedServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


# --- definitions and runs ------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def publish(stack: Any, admin: dict[str, str], text: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{stack.url('trigger')}/definitions", content=text,
                                     headers=admin)
    assert response.status_code == 201, response.text
    published: dict[str, Any] = response.json()
    return published


async def start(stack: Any, admin: dict[str, str], name: str, inputs: dict[str, Any] | None = None,
                **extra: Any) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{stack.url('trigger')}/runs",
                                     json={"orchestration": name, "inputs": inputs or {}, **extra},
                                     headers=admin)
    assert response.status_code == 202, response.text
    return str(response.json()["run_id"])


async def control(stack: Any, admin: dict[str, str], run_id: str, action: str,
                  **body: Any) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{stack.url('stage-coordinator')}/runs/{run_id}/{action}",
                                     json=body, headers=admin)
    assert response.status_code == 202, response.text


async def run_doc(mongo: Any, run_id: str) -> dict[str, Any] | None:
    """The run document, with its history read from ``run_history`` as the API reads it."""
    found: dict[str, Any] | None = await mongo.runs.find_one({"_id": run_id})
    if found is None:
        return None
    doc = unpacked(found)  # the run's state as fields
    doc["history"] = await read_history(mongo.run_history, doc)
    return doc


async def wait_run(mongo: Any, run_id: str, *statuses: str, within: float = 20.0,
                   check: Any = None) -> dict[str, Any]:
    """Wait until the run has one of ``statuses`` (default: a final one) and ``check(doc)``."""
    wanted = statuses or FINAL

    async def ready() -> dict[str, Any] | None:
        doc = await run_doc(mongo, run_id)
        if doc is None or doc["status"] not in wanted:
            return None
        return doc if check is None or check(doc) else None

    try:
        return await wait_for(ready, timeout=within, interval=0.1)  # type: ignore[no-any-return]
    except AssertionError:
        doc = await run_doc(mongo, run_id)
        state = None if doc is None else {
            "status": doc["status"], "stage": doc.get("stage"), "error": doc.get("error"),
            "steps": {k: (v["status"], v["attempt"], v.get("error"))
                      for k, v in doc["steps"].items()},
        }
        raise AssertionError(f"run {run_id} not {wanted} within {within}s: {state}") from None


def kinds(doc: dict[str, Any], **match: Any) -> list[str]:
    return [e["kind"] for e in doc["history"] if all(e.get(k) == v for k, v in match.items())]


def entries(doc: dict[str, Any], kind: str, **match: Any) -> list[dict[str, Any]]:
    return [e for e in doc["history"]
            if e["kind"] == kind and all(e.get(k) == v for k, v in match.items())]


# --- Kafka ---------------------------------------------------------------------------------


def change(object_type: str, record_id: str, kind: str, new: dict[str, Any] | None = None,
           old: dict[str, Any] | None = None) -> Envelope:
    return new_event(
        RecordChanged(object_type=object_type, record_id=record_id, change=kind,
                      new=new or {}, old=old or {}),
        producer="upstream", key=f"{object_type}:{record_id}",
    )


async def send(bootstrap: str, topic: str, *envelopes: Envelope, raw: bytes | None = None,
               key: str | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for envelope in envelopes:
            await producer.send_and_wait(topic, encode(envelope),
                                         key=envelope.partition_key.encode())
        if raw is not None:
            await producer.send_and_wait(topic, raw, key=(key or "raw").encode())
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, *, run_id: str | None = None,
                     within: float = 10.0) -> list[dict[str, Any]]:
    """Every message on the topic up to its current end (optionally only one run's)."""
    partitions = next(t.partitions for t in TOPICS if t.name == topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        found: list[dict[str, Any]] = []
        deadline = asyncio.get_running_loop().time() + within
        while True:
            positions = {tp: await consumer.position(tp) for tp in tps}
            if all(positions[tp] >= ends[tp] for tp in tps):
                break
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"could not read {topic} to its end in {within}s")
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    message = json.loads(record.value)
                    if run_id is None or message.get("run_id") == run_id:
                        found.append(message)
        return found
    finally:
        await consumer.stop()
