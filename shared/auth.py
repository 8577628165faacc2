"""Who is calling: the one place every service checks a token (docs/security.md).

Tokens are issued by the assignment service (``baton tokens issue``, and a session token
for each sign-in to the /ui pages), which stores them as SHA-256 hashes in its ``tokens``
collection and publishes each one's facts (user, kind, expiry; revoked) on the compacted
``access`` topic, with the directory's people (their roles, groups and queues) whenever
the directory changes.  Every service keeps that topic in memory (shared/access.py): a
check reads no database, and a removed or demoted person loses access as soon as the
change is read there (the propagation delay, milliseconds on a healthy broker).  A token
unknown here makes the service catch up with the topic once before refusing it, so a
token issued a moment ago on another replica is never refused.  The
``BATON_ADMIN_TOKEN`` setting, when set, is a bootstrap admin token for operators: it is
no person, never expires and is always an admin.

The JSON APIs take the token from ``Authorization: Bearer`` only; the browser's session
cookie counts for the /ui pages alone (:meth:`Authenticator.session`), whose form posts
carry a CSRF token and an Origin check, so a cookie never authorizes an API call.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from fastapi import HTTPException, Request

UNKNOWN = "unknown or revoked token"
MISS_SECONDS = 5.0
MISS_ENTRIES = 10_000
ADMIN, OPERATOR = "admin", "operator"
BOOTSTRAP_ADMIN = "admin"
TokenKind = Literal["api", "session"]


@dataclass(frozen=True)
class Principal:
    """The caller as the directory says now: roles, and the groups and queues they are in."""

    user_id: str
    roles: frozenset[str] = field(default_factory=frozenset)
    groups: frozenset[str] = field(default_factory=frozenset)
    queues: frozenset[str] = field(default_factory=frozenset)
    bootstrap: bool = False  # the BATON_ADMIN_TOKEN: not a person in the directory

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    @property
    def sees_every_run(self) -> bool:
        """Admins and operators see every run; others see the runs they take part in."""
        return bool(self.roles & {ADMIN, OPERATOR})

    @property
    def participant_keys(self) -> list[str]:
        """How a run's ``participants`` name this caller: themselves and their pools."""
        return [f"user:{self.user_id}", *(f"group:{g}" for g in sorted(self.groups)),
                *(f"queue:{q}" for q in sorted(self.queues))]


@dataclass(frozen=True)
class IssuedToken:
    id: str
    token: str  # the secret: shown once, stored only as its hash
    user_id: str
    kind: TokenKind
    expires_at: datetime


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "bt_" + secrets.token_urlsafe(32)


def refused(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


class AccessFacts(Protocol):
    """What a token stands for now (shared/access.py keeps it from the access topic)."""

    async def resolve(self, digest: str, *, catch_up: bool = True
                      ) -> tuple[datetime | None, Principal | str]:
        """(expires_at, the principal) or (expires_at or None, why it is refused); an
        unknown token is looked for once more after catching up, unless ``catch_up`` is
        False."""
        ...


class Authenticator:
    def __init__(self, access: AccessFacts, admin_token: str | None) -> None:
        self.access = access
        self.admin_token = admin_token
        # Tokens found nowhere, even after catching up: a made-up token costs one catch-up
        # per MISS_SECONDS, not one per request.
        self._misses: dict[str, float] = {}

    # -- checking ---------------------------------------------------------------------------

    async def principal(self, request: Request) -> Principal:
        """The caller of a JSON API: ``Authorization: Bearer <token>`` (never a cookie)."""
        return await self.bearer(request.headers.get("authorization", ""))

    async def bearer(self, authorization: str) -> Principal:
        """The caller an Authorization header's value names (a request path that reads the
        header itself, services/assignment/completing.py, checks it here too)."""
        scheme, _, token = authorization.partition(" ")
        if not token.strip():
            raise refused("a bearer token is required (issue one with `baton tokens issue`)")
        if scheme.lower() != "bearer":
            raise refused("use 'Authorization: Bearer <token>'")
        return await self.check(token.strip())

    async def session(self, token: str) -> Principal | None:
        """The person behind a /ui session cookie, or None when it no longer counts."""
        if not token:
            return None
        try:
            return await self.check(token)
        except HTTPException as exc:
            if exc.status_code != 401:
                raise
            return None

    async def admin(self, request: Request) -> Principal:
        principal = await self.principal(request)
        if not principal.is_admin:
            raise HTTPException(403, "this action needs the admin role")
        return principal

    async def operator(self, request: Request) -> Principal:
        """Admins and operators: every run, its statistics and its control."""
        principal = await self.principal(request)
        if not principal.sees_every_run:
            raise HTTPException(403, "this needs the operator or admin role")
        return principal

    async def check(self, token: str) -> Principal:
        """The principal a token stands for now; 401 when unknown, revoked or expired."""
        if self.admin_token and hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return Principal(BOOTSTRAP_ADMIN, frozenset({ADMIN}), bootstrap=True)
        digest = hash_token(token)
        missed = self._misses.get(digest, 0.0) > time.monotonic()
        try:
            expires_at, found = await self.access.resolve(digest, catch_up=not missed)
        except TimeoutError:
            raise HTTPException(503, "tokens cannot be checked right now (the access topic "
                                     "is out of reach); try again") from None
        if found == UNKNOWN and not missed:
            self._missed(digest)
        if isinstance(found, str):
            raise refused(found)
        if expires_at is not None and expires_at <= datetime.now(UTC):
            raise refused("the token has expired: sign in again or ask an admin for a new one")
        return found

    def _missed(self, digest: str) -> None:
        now = time.monotonic()
        if len(self._misses) >= MISS_ENTRIES:  # made-up tokens must not grow it forever
            self._misses = {k: v for k, v in self._misses.items() if v > now}
            if len(self._misses) >= MISS_ENTRIES:
                self._misses.clear()
        self._misses[digest] = now + MISS_SECONDS


def authenticator_for(access: AccessFacts, settings: Any) -> Authenticator:
    """The authenticator a service builds from its settings (shared.settings)."""
    return Authenticator(access, settings.admin_token)
