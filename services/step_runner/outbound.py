"""Where outbound calls may go: public addresses, plus what the deployment allows.

A definition's http step can take its URL from a run's inputs, so the step-runner must not
become a way into the network it runs in.  Every connection is checked on the address it
is about to use, not on the URL: the name is resolved once, each address it resolves to is
checked, and the connection goes to that checked address (a DNS answer that changes between
a check and a connect, "DNS rebinding", cannot slip past).  The Host header and the TLS
server name stay the URL's host, so certificates are verified as usual.

Refused by default: loopback, link-local, private (RFC 1918), shared (100.64/10),
unique-local (fc00::/7), multicast, unspecified, reserved and documentation ranges, every
address that is not globally routable, the same inside IPv4-mapped, 6to4, Teredo and NAT64
IPv6 addresses, and the cloud metadata endpoints (some of which are public addresses).
``BATON_OUTBOUND_ALLOW`` lists hosts (``payroll.internal``, ``*.corp.example``) and networks
(``10.20.0.0/16``, ``127.0.0.1/32``) that a deployment needs to reach anyway.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack instance metadata
    "169.254.170.2",  # AWS ECS task credentials
    "168.63.129.16",  # Azure wire server (a public address)
    "100.100.100.200",  # Alibaba Cloud
    "192.0.0.192",  # Oracle Cloud
    "fd00:ec2::254",  # AWS over IPv6
))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class OutboundRefused(Exception):
    """A call to an address the policy does not allow: not worth a retry."""


def refusal(address: Address) -> str | None:
    """Why an address is not for outbound calls, or None for a public one."""
    embedded = _embedded_ipv4(address)
    # An IPv4-mapped or NAT64 address is its IPv4 address (IPv6-only clusters reach the
    # internet through 64:ff9b::/96); a 6to4 or Teredo one must pass as both.
    translated = isinstance(address, ipaddress.IPv6Address) and (
        address.ipv4_mapped is not None or address in _NAT64)
    for candidate in ([embedded] if translated else [address, embedded]):
        if candidate is None:
            continue
        if candidate in METADATA:
            return "a cloud metadata address"
        for test, kind in (("is_loopback", "a loopback"), ("is_link_local", "a link-local"),
                           ("is_multicast", "a multicast"), ("is_unspecified", "an unspecified"),
                           ("is_private", "a private"), ("is_reserved", "a reserved")):
            if getattr(candidate, test):
                return f"{kind} address"
        if not candidate.is_global:
            return "not a public address"
    return None


def _embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo client, NAT64), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


class OutboundPolicy:
    """The hosts and networks allowed beyond the public internet."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.networks: list[Network] = []
        self.hosts: set[str] = set()
        self.domains: list[str] = []  # "*.corp.example" allows every name under corp.example
        for entry in (e.strip().lower() for e in allow):
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if entry.startswith("*."):
                self.domains.append(entry[1:])
            else:
                self.hosts.add(entry.rstrip("."))

    @classmethod
    def parse(cls, setting: str) -> OutboundPolicy:
        """From the setting's text: entries separated by commas or spaces."""
        return cls(setting.replace(",", " ").split())

    def allows_host(self, host: str) -> bool:
        name = host.lower().rstrip(".")
        return name in self.hosts or any(name.endswith(d) for d in self.domains)

    def allows_address(self, address: Address) -> bool:
        candidates = [address, _embedded_ipv4(address)]
        return any(c is not None and c.version == n.version and c in n
                   for c in candidates for n in self.networks)

    def check(self, host: str, address: Address) -> None:
        if self.allows_host(host) or self.allows_address(address):
            return
        reason = refusal(address)
        if reason is None:
            return
        shown = host if host == str(address) else f"{host} ({address})"
        raise OutboundRefused(
            f"outbound call to {shown} refused: {reason}; a deployment that needs it lists the"
            " host or its network in BATON_OUTBOUND_ALLOW"
        )


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the policy allows."""

    def __init__(self, policy: OutboundPolicy,
                 inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.policy = policy
        self.inner = inner or httpcore.AnyIOBackend()

    # The signatures are httpcore's (hence the timeout parameters).
    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None, socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        address = await self.resolve(host, port, timeout)
        return await self.inner.connect_tcp(str(address), port, timeout=timeout,
                                            local_address=local_address,
                                            socket_options=socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: Iterable[Any] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        raise OutboundRefused("outbound calls over unix sockets are refused")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)

    async def resolve(self, host: str, port: int,
                      timeout: float | None = None) -> Address:  # noqa: ASYNC109
        """The address to connect to: every address the name resolves to must be allowed."""
        name = host.strip("[]")
        try:
            addresses = [ipaddress.ip_address(name)]
        except ValueError:
            loop = asyncio.get_running_loop()
            try:
                infos = await asyncio.wait_for(
                    loop.getaddrinfo(name, port, type=socket.SOCK_STREAM), timeout)
            except (OSError, TimeoutError) as exc:
                raise httpcore.ConnectError(f"cannot resolve {name}: {exc}") from exc
            addresses = list(dict.fromkeys(
                ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
        if not addresses:
            raise httpcore.ConnectError(f"{name} resolves to no address")
        for address in addresses:
            self.policy.check(name, address)
        return addresses[0]


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a :class:`GuardedBackend`, ignoring proxy settings.

    httpx offers no public way to give its transport a network backend, so the connection
    pool it builds is replaced by one built the same way with ours (httpx is pinned < 1).
    """

    def __init__(self, policy: OutboundPolicy) -> None:
        super().__init__(trust_env=False)
        limits = httpx.Limits()
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy),
        )


def guarded_client(policy: OutboundPolicy, *, timeout: float = 30.0) -> httpx.AsyncClient:
    """A client that never follows redirects and connects only where the policy allows."""
    return httpx.AsyncClient(transport=GuardedTransport(policy), follow_redirects=False,
                             trust_env=False, timeout=timeout)
