"""Who is calling: the one place every service checks a token (docs/security.md).

Tokens are issued by the assignment service (``baton tokens issue``, and a session token
for each sign-in to the /ui pages) and stored as SHA-256 hashes in the ``tokens``
collection.  A token names a user and expires (``expires_at``); it carries no roles:
roles, groups and queues are read from the directory's ``users`` collection when the
token is checked, so a removed or demoted person loses access within
:data:`CACHE_SECONDS`.  The ``BATON_ADMIN_TOKEN`` setting, when set, is a bootstrap
admin token for operators: it is no person, never expires and is always an admin.

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
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import HTTPException, Request
from pymongo.asynchronous.database import AsyncDatabase

from shared.mongo import Index
from shared.times import when

TOKENS = "tokens"
USERS = "users"  # the directory's people (the assignment service loads them)
INDEXES = [Index(TOKENS, [("user_id", 1)])]
CACHE_SECONDS = 5.0
CACHE_ENTRIES = 10_000
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


class Authenticator:
    def __init__(
        self,
        db: AsyncDatabase[dict[str, Any]],
        admin_token: str | None,
        *,
        token_lifetime: timedelta = timedelta(days=30),
        session_lifetime: timedelta = timedelta(hours=12),
    ) -> None:
        self.tokens = db[TOKENS]
        self.users = db[USERS]
        self.admin_token = admin_token
        self.lifetimes: dict[TokenKind, timedelta] = {"api": token_lifetime,
                                                      "session": session_lifetime}
        self._cache: dict[str, tuple[float, datetime | None, Principal | str]] = {}

    # -- checking ---------------------------------------------------------------------------

    async def principal(self, request: Request) -> Principal:
        """The caller of a JSON API: ``Authorization: Bearer <token>`` (never a cookie)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
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
        except HTTPException:
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
        cached = self._cache.get(digest)
        if cached is None or cached[0] <= time.monotonic():
            cached = (time.monotonic() + CACHE_SECONDS, *await self._resolve(digest))
            if len(self._cache) >= CACHE_ENTRIES:  # made-up tokens must not grow it forever
                self._prune()
            self._cache[digest] = cached
        _, expires_at, found = cached
        if isinstance(found, str):
            raise refused(found)
        if expires_at is not None and expires_at <= datetime.now(UTC):
            raise refused("the token has expired: sign in again or ask an admin for a new one")
        return found

    async def _resolve(self, digest: str) -> tuple[datetime | None, Principal | str]:
        doc = await self.tokens.find_one({"_id": digest})
        if doc is None or doc.get("revoked"):
            return None, "unknown or revoked token"
        created = when(doc.get("created_at")) or datetime.now(UTC)
        kind: TokenKind = "session" if doc.get("kind") == "session" else "api"
        # Tokens issued before they expired get the lifetime of their kind from issue.
        expires_at = when(doc.get("expires_at")) or created + self.lifetimes[kind]
        user = await self.users.find_one({"_id": doc["user_id"]},
                                         {"roles": 1, "groups": 1, "queues": 1, "removed": 1})
        if user is None or user.get("removed"):  # removed: the directory's marker
            return expires_at, f"user {doc['user_id']!r} is no longer in the directory"
        return expires_at, Principal(
            doc["user_id"],
            frozenset(user.get("roles") or ()),
            frozenset(user.get("groups") or ()),
            frozenset(user.get("queues") or ()),
        )

    def _prune(self) -> None:
        now = time.monotonic()
        self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        if len(self._cache) >= CACHE_ENTRIES:
            self._cache.clear()

    def forget(self) -> None:
        """Drop cached lookups (after a revocation here; other processes wait out the cache)."""
        self._cache.clear()

    # -- issuing ----------------------------------------------------------------------------

    async def issue(self, user_id: str, *, kind: TokenKind = "api", issued_by: str,
                    note: str = "", roles: list[str] | None = None) -> IssuedToken:
        """A new token for ``user_id``; ``roles`` are what the user held (shown in lists)."""
        token = new_token()
        digest = hash_token(token)
        now = datetime.now(UTC)
        expires_at = now + self.lifetimes[kind]
        await self.tokens.insert_one({
            "_id": digest, "id": digest[:12], "user_id": user_id, "kind": kind,
            "roles": roles or [], "note": note, "issued_by": issued_by, "created_at": now,
            "expires_at": expires_at, "revoked": False})
        return IssuedToken(digest[:12], token, user_id, kind, expires_at)

    async def revoke(self, token_id: str) -> bool:
        """Revoke a token by its public id; False when there is none."""
        result = await self.tokens.update_one({"id": token_id}, {"$set": {"revoked": True}})
        self.forget()
        return result.matched_count > 0

    async def end_session(self, token: str) -> None:
        """Sign-out: the session token stops working here now, elsewhere within the cache."""
        await self.tokens.update_one({"_id": hash_token(token), "kind": "session"},
                                     {"$set": {"revoked": True}})
        self.forget()


def authenticator_for(db: AsyncDatabase[dict[str, Any]], settings: Any) -> Authenticator:
    """The authenticator a service builds from its settings (shared.settings)."""
    return Authenticator(
        db, settings.admin_token,
        token_lifetime=timedelta(days=settings.token_days),
        session_lifetime=timedelta(hours=settings.session_hours),
    )
