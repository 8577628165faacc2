"""A local HTTP server for the step-runner's tests, and a handler run without MongoDB."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from prometheus_client import CollectorRegistry
from receivers import serving

from contracts import parse_dict
from contracts.envelope import Envelope, new_event
from contracts.events.steps import StepCompleted, StepFailed, StepRequested
from services.step_runner.actions import Action
from services.step_runner.attempts import MemoryAttempts
from services.step_runner.handler import StepHandler
from services.step_runner.secrets import SecretStore


@dataclass
class EchoServer:
    """Answers every request with ``reply`` (status, headers, JSON body); keeps what came."""

    base: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)

    def url(self, path: str = "/") -> str:
        return self.base + path


@contextmanager
def echo_server() -> Iterator[EchoServer]:
    echo = EchoServer()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            seen = {"path": self.path, "method": self.command,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": raw.decode(errors="replace")}
            echo.received.append(seen)
            data = json.dumps(seen).encode()
            self.send_response(echo.status)
            for name, value in echo.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(Handler) as base:
        echo.base = base
        yield echo


def handler(actions: dict[str, Action], secrets: dict[str, str] | None = None,
            max_timeout_seconds: float | None = None, **store: Any) -> StepHandler:
    """A StepHandler whose attempts are only run (``run_attempt``), never published."""
    return StepHandler(MemoryAttempts(), actions, publisher=None,  # type: ignore[arg-type]
                       registry=CollectorRegistry(),
                       secrets=SecretStore(secrets or {}, store.get("directory")),
                       max_timeout_seconds=max_timeout_seconds)


def dispatch(action: str, inputs: dict[str, Any], *, timeout_seconds: float = 30.0,
             attempt: int = 1) -> Envelope:
    return new_event(
        StepRequested(orchestration="o", version=1, stage="s", step="call", attempt=attempt,
                      action=action, inputs=inputs, timeout_seconds=timeout_seconds,
                      idempotency_key=f"r1:call:{attempt}", operation_key="r1:call:visit-1"),
        producer="test", run_id="r1",
    )


async def outcome(runner: StepHandler, envelope: Envelope) -> tuple[Any, dict[str, Any]]:
    """The attempt's outcome payload, and the document the step-runner would store."""
    doc, _ = await runner.run_attempt(envelope)
    payload = parse_dict(doc["messages"][0]).payload
    assert isinstance(payload, StepCompleted | StepFailed)
    return payload, doc
