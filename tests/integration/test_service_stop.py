"""A service process stops by itself on SIGTERM, and runs its whole shutdown, also when
MongoDB went away first (as when `make run` is interrupted twice, or killed, and every
child is stopped at once).

``processes.stop`` sends SIGTERM and SIGKILLs what is still running after its timeout:
an exit code of 0 says the process ended on its own after every shutdown step ran (1
when a step failed, -9 when it had to be killed; see shared/runtime.py Runtime.serve).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra import processes
from infra.stack import ServiceStack

pytestmark = pytest.mark.integration

SERVICE = "trigger"  # one with a projection, a consumer group and periodic jobs


class Cuttable:
    """A TCP relay to a server that the test can cut, as if the server had stopped."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

    def cut(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass


@pytest.fixture
def stack(servers: Any, database: str, tmp_path: Path) -> Iterator[ServiceStack]:
    env = {**servers.env(database), "BATON_ADMIN_TOKEN": "bt_stop_test",
           "BATON_LOG_FORMAT": "json"}
    stack = ServiceStack(env=env, log_dir=tmp_path, names=(SERVICE,))
    yield stack
    stack.stop()


def stop(stack: ServiceStack, kill_after: float = 60.0) -> int:
    """SIGTERM the service, SIGKILL after ``kill_after`` s: generous, so that a busy machine
    is not taken for a stuck shutdown; the exit code says whether it ran to its end."""
    proc = stack.procs.pop(SERVICE)
    processes.stop(proc, timeout=kill_after)
    return int(proc.returncode)


def shutdown_lines(stack: ServiceStack) -> list[str]:
    lines = [json.loads(line) for line in (stack.log_dir / f"{SERVICE}.log").read_text()
             .splitlines() if line.startswith("{")]
    return [line["msg"] for line in lines if line.get("logger") == "baton.runtime"
            and line["msg"].startswith(f"{SERVICE} stopped")]


def test_sigterm_stops_a_service_after_its_whole_shutdown(stack: ServiceStack) -> None:
    stack.start(timeout=90)

    assert stop(stack) == 0
    assert shutdown_lines(stack) == [f"{SERVICE} stopped"]


def test_a_service_stops_by_itself_when_mongodb_went_away_first(
        stack: ServiceStack, servers: Any) -> None:
    mongo_port = int(servers.mongodb_uri.split(":")[2].split("/")[0])
    relay = Cuttable(mongo_port)
    stack.env["BATON_MONGODB_URI"] = servers.mongodb_uri.replace(
        f":{mongo_port}/", f":{relay.port}/")
    stack.start(timeout=90)

    relay.cut()
    health = httpx.get(f"{stack.url(SERVICE)}/health", timeout=30)  # it has noticed
    assert health.status_code == 503 and health.json()["checks"]["mongodb"].startswith("down")

    # Not -9: its shutdown did not wait for the gone server (the client's server
    # selection would take 10 s; the shutdown bounds that wait at 1 s).
    assert stop(stack, kill_after=8.0) == 0
    assert shutdown_lines(stack) == [f"{SERVICE} stopped"]
