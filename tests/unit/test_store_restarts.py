"""A MongoDB server that restarted may have lost acknowledged writes: every service reconciles."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry
from pymongo.errors import OperationFailure

from shared.broker_watch import LOST_WRITES_SECONDS, BrokerWatch
from shared.metrics import ServiceMetrics
from shared.settings import ServiceSettings


class Server:
    def __init__(self) -> None:
        self.status: dict[str, Any] = {"pid": 10, "uptime": 100}
        self.refuse = False

    async def command(self, name: str) -> dict[str, Any]:
        assert name == "serverStatus"
        if self.refuse:
            raise OperationFailure("not authorized", code=13)
        return dict(self.status)


class Database(dict[str, Any]):
    """The service's own database: its server answers serverStatus."""

    def __init__(self, server: Server) -> None:
        super().__init__(system=SimpleNamespace())
        self.client = SimpleNamespace(admin=server)


def watch(server: Server) -> BrokerWatch:
    db: Any = Database(server)
    return BrokerWatch(ServiceSettings(service_name="test"), db,
                       ServiceMetrics(CollectorRegistry(), "test"))


async def test_a_new_process_or_a_shorter_uptime_is_a_restart_and_the_first_look_is_not() -> None:
    server = Server()
    seen = watch(server)
    assert not await seen.store_restarted()  # the first look: nothing to compare with
    server.status["uptime"] = 115
    assert not await seen.store_restarted()  # the same server, up longer
    server.status = {"pid": 11, "uptime": 3}
    assert await seen.store_restarted()  # another process
    server.status["uptime"] = 18
    assert not await seen.store_restarted()
    server.status["uptime"] = 2  # the same pid again, but up for less: it restarted
    assert await seen.store_restarted()


async def test_a_restart_replays_from_before_the_server_was_last_seen_then_reconciles(
    monkeypatch: Any,
) -> None:
    server = Server()
    seen = watch(server)
    calls: list[Any] = []

    async def replay(since: float) -> None:
        calls.append(("replay", since))

    async def reconcile() -> None:
        calls.append("reconcile")

    async def topics_checked() -> None:
        return None
    monkeypatch.setattr(seen, "ensure_topics", topics_checked)
    seen.replay_since = replay
    seen.hooks.append(reconcile)
    assert not await seen.store_restarted()
    last_seen = seen.store_seen_at
    server.status = {"pid": 11, "uptime": 1}
    assert await seen()
    assert calls == [("replay", last_seen - LOST_WRITES_SECONDS), "reconcile"]


async def test_a_server_that_refuses_server_status_is_not_watched() -> None:
    server = Server()
    server.refuse = True
    seen = watch(server)
    assert not await seen.store_restarted()
    server.refuse = False
    server.status = {"pid": 99, "uptime": 0}
    assert not await seen.store_restarted() and not seen.store_watched
