"""Outbound calls: internal addresses are refused unless allowlisted, where it connects."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import httpcore
import pytest
from step_runner_support import dispatch, echo_server, handler, outcome

from contracts.events.steps import StepCompleted, StepFailed
from services.step_runner.actions import ActionContext, FatalError
from services.step_runner.actions.http import HttpAction
from services.step_runner.outbound import (
    GuardedBackend,
    OutboundPolicy,
    OutboundRefused,
    refusal,
)

CONTEXT = ActionContext(run_id="r1", orchestration="o", stage="s", step="call", attempt=1,
                        idempotency_key="r1:call:1")
INTERNAL = [
    "127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.1.1",
    "169.254.169.254", "100.64.0.1", "100.100.100.200", "0.0.0.0", "224.0.0.251",
    "255.255.255.255", "168.63.129.16", "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1",
    "fd00:ec2::254", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
    "::ffff:169.254.169.254", "64:ff9b::7f00:1", "2002:7f00:1::",
]
PUBLIC = ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8",
          "64:ff9b::808:808"]


@pytest.mark.parametrize("address", INTERNAL)
def test_internal_addresses_are_refused(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is not None
    with pytest.raises(OutboundRefused, match="BATON_OUTBOUND_ALLOW"):
        OutboundPolicy().check(address, ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def test_the_allowlist_opens_networks_and_hosts() -> None:
    policy = OutboundPolicy.parse("127.0.0.1/32, 10.20.0.0/16 payroll.internal *.corp.example")
    for host, address in [("127.0.0.1", "127.0.0.1"), ("x", "10.20.3.4"),
                          ("x", "::ffff:127.0.0.1"), ("payroll.internal", "10.9.9.9"),
                          ("PAYROLL.internal.", "192.168.0.1"), ("a.b.corp.example", "10.1.1.1")]:
        policy.check(host, ipaddress.ip_address(address))
    for host, address in [("x", "127.0.0.2"), ("x", "10.21.0.1"), ("corp.example", "10.1.1.1"),
                          ("payroll.internal.evil", "10.9.9.9"), ("x", "169.254.169.254")]:
        with pytest.raises(OutboundRefused):
            policy.check(host, ipaddress.ip_address(address))


async def test_http_refuses_loopback_by_default_and_sends_nothing() -> None:
    with echo_server() as server:
        with pytest.raises(FatalError, match="refused: a loopback address"):
            await HttpAction().run({"url": server.url("/admin")}, CONTEXT)
        localhost = server.url("/admin").replace("127.0.0.1", "localhost")
        with pytest.raises(FatalError, match=r"localhost \(.*\) refused"):
            await HttpAction().run({"url": localhost}, CONTEXT)
    assert server.received == []


async def test_http_reaches_an_allowlisted_address() -> None:
    action = HttpAction(OutboundPolicy(["127.0.0.1/32"]))
    with echo_server() as server:
        result = await action.run({"url": server.url("/hook"), "outputs": {
            "host": "response.body.headers.host"}}, CONTEXT)
    assert result.outputs["status"] == 200
    assert result.outputs["host"] == server.base.removeprefix("http://")  # Host kept


async def test_redirects_are_not_followed() -> None:
    action = HttpAction(OutboundPolicy(["127.0.0.1/32"]))
    with echo_server() as server:
        server.status = 302
        server.headers = {"Location": "http://169.254.169.254/latest/meta-data/"}
        result = await action.run({"url": server.url("/moved"), "method": "GET"}, CONTEXT)
    assert result.outputs["status"] == 302
    assert len(server.received) == 1


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Stands in for the network: records where it was asked to connect."""

    def __init__(self) -> None:
        self.connected: list[str] = []

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
                          local_address: str | None = None,
                          socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        self.connected.append(host)
        raise httpcore.ConnectError("recorded")


def resolving(monkeypatch: pytest.MonkeyPatch, *answers: list[str]) -> list[str]:
    """Make name resolution give ``answers`` in turn (a rebinding DNS server); count lookups."""
    lookups: list[str] = []

    async def getaddrinfo(self: Any, host: str, port: int, **_: Any) -> list[Any]:
        addresses = answers[min(len(lookups), len(answers) - 1)]
        lookups.append(host)
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port)) for a in addresses]

    monkeypatch.setattr("asyncio.base_events.BaseEventLoop.getaddrinfo", getaddrinfo)
    return lookups


async def test_the_checked_address_is_the_one_connected_to(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    lookups = resolving(monkeypatch, ["93.184.216.34"], ["127.0.0.1"])
    inner = RecordingBackend()
    backend = GuardedBackend(OutboundPolicy(), inner)
    with pytest.raises(httpcore.ConnectError):
        await backend.connect_tcp("rebind.example", 443)
    # resolved once; the connection goes to that address, never to the name again
    assert lookups == ["rebind.example"] and inner.connected == ["93.184.216.34"]


async def test_a_name_with_any_internal_address_is_refused(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    resolving(monkeypatch, ["93.184.216.34", "169.254.169.254"])
    inner = RecordingBackend()
    with pytest.raises(OutboundRefused, match="cloud metadata"):
        await GuardedBackend(OutboundPolicy(), inner).connect_tcp("metadata.example", 80)
    assert inner.connected == []


async def test_a_refused_call_fails_the_step_without_retries() -> None:
    runner = handler({"http": HttpAction()})
    failed, _ = await outcome(runner, dispatch("http", {"url": "http://[::ffff:127.0.0.1]:9/"}))
    assert isinstance(failed, StepFailed) and failed.retryable is False
    assert "refused" in failed.error and "loopback" in failed.error


async def test_the_step_runner_builds_http_with_its_allowlist() -> None:
    from services.step_runner.__main__ import StepRunnerSettings
    from services.step_runner.actions import load_actions

    settings = StepRunnerSettings(outbound_allow="127.0.0.1/32")
    runner = handler(load_actions(settings))
    with echo_server() as server:
        done, _ = await outcome(runner, dispatch("http", {"url": server.url()}))
    assert isinstance(done, StepCompleted) and done.outputs["status"] == 200
