"""Bearer-token authentication shared by every service's HTTP API.

Tokens are issued by the assignment service (``baton tokens issue``) and stored as
SHA-256 hashes in the ``tokens`` collection; every service reads them.  The
``BATON_ADMIN_TOKEN`` setting, when set, is a bootstrap admin token for operators.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException, Request
from pymongo.asynchronous.database import AsyncDatabase

from shared.mongo import Index

TOKENS = "tokens"
INDEXES = [Index(TOKENS, [("user_id", 1)])]
CACHE_SECONDS = 30.0


@dataclass(frozen=True)
class Principal:
    user_id: str
    roles: frozenset[str] = field(default_factory=frozenset)
    groups: frozenset[str] = field(default_factory=frozenset)  # as of the token's issue

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "bt_" + secrets.token_urlsafe(32)


class Authenticator:
    def __init__(self, db: AsyncDatabase[dict[str, Any]], admin_token: str | None) -> None:
        self.tokens = db[TOKENS]
        self.admin_token = admin_token
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def principal(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not token:
            token = request.cookies.get("baton_token", "")
        elif scheme.lower() != "bearer":
            raise HTTPException(401, "use 'Authorization: Bearer <token>'")
        if not token:
            raise HTTPException(
                401, "a bearer token is required (issue one with `baton tokens issue`)"
            )
        if self.admin_token and hmac.compare_digest(token, self.admin_token):
            return Principal("admin", frozenset({"admin"}))
        principal = await self._lookup(hash_token(token))
        if principal is None:
            raise HTTPException(401, "unknown or revoked token")
        return principal

    async def admin(self, request: Request) -> Principal:
        principal = await self.principal(request)
        if not principal.is_admin:
            raise HTTPException(403, "this action needs the admin role")
        return principal

    def forget(self) -> None:
        """Drop cached lookups (after a revocation here; other processes wait out the cache)."""
        self._cache.clear()

    async def _lookup(self, digest: str) -> Principal | None:
        cached = self._cache.get(digest)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        doc = await self.tokens.find_one({"_id": digest, "revoked": {"$ne": True}})
        principal = Principal(doc["user_id"], frozenset(doc.get("roles", [])),
                              frozenset(doc.get("groups", []))) if doc else None
        self._cache[digest] = (time.monotonic() + CACHE_SECONDS, principal)
        return principal
