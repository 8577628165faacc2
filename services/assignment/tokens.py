"""Tokens and the directory, published on the access topic that every service checks with.

This service owns the ``tokens`` collection and the directory.  Each change is stored
first, then published on the compacted ``access`` topic before the call that made it is
answered (contracts/events/access.py): a token's facts keyed by its hash (never the token
itself), and the directory's people (roles, groups, queues; no contacts).  A crash between
the two is repaired at every start, and after the broker lost its data, by publishing the
directory and every live token again (:meth:`TokenDesk.announce_all`); the topic is
compacted and the ids derive from what they say, so a repeat costs one message each.

This service checks tokens like every other one, against its own view of the topic
(shared/access.py), so a check means the same everywhere.  After a revocation it catches
up with the topic before answering, so the revoked token is refused here at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from contracts import Envelope
from contracts.envelope import derived_id, new_event
from contracts.events.access import (
    DIRECTORY_KEY,
    AccessPerson,
    DirectoryPublished,
    TokenIssued,
    TokenRevoked,
)
from services.assignment.core.directory import Directory
from shared.access import AccessView
from shared.auth import Authenticator, IssuedToken, TokenKind, hash_token, new_token
from shared.messaging import Publisher
from shared.mongo import Index
from shared.times import when

TOKENS = "tokens"
INDEXES = [Index(TOKENS, [("user_id", 1)])]
PRODUCER = "assignment"
BATCH = 500


def directory_published(directory: Directory) -> Envelope:
    people = tuple(AccessPerson(id=user.id, roles=tuple(user.roles), groups=tuple(user.groups),
                                queues=tuple(user.queues))
                   for user in directory.users.values())
    payload = DirectoryPublished(revision=directory.revision, people=people)
    return new_event(payload, producer=PRODUCER, key=DIRECTORY_KEY,
                     event_id=derived_id("directory", directory.revision))


def token_issued(digest: str, user_id: str, kind: TokenKind, expires_at: datetime) -> Envelope:
    return new_event(TokenIssued(token_hash=digest, user_id=user_id, kind=kind,
                                 expires_at=expires_at),
                     producer=PRODUCER, key=digest, event_id=derived_id(digest, "issued"))


def token_revoked(digest: str) -> Envelope:
    return new_event(TokenRevoked(token_hash=digest), producer=PRODUCER, key=digest,
                     event_id=derived_id(digest, "revoked"))


class TokenDesk(Authenticator):
    """The owner's authenticator: it checks like everyone's, and issues and revokes."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]], view: AccessView,
                 publisher: Publisher, admin_token: str | None, *,
                 token_lifetime: timedelta = timedelta(days=30),
                 session_lifetime: timedelta = timedelta(hours=12)) -> None:
        super().__init__(view, admin_token)
        self.view = view
        self.tokens = db[TOKENS]
        self.publisher = publisher
        self.lifetimes: dict[TokenKind, timedelta] = {"api": token_lifetime,
                                                      "session": session_lifetime}

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
        await self.publisher.publish([token_issued(digest, user_id, kind, expires_at)])
        return IssuedToken(digest[:12], token, user_id, kind, expires_at)

    async def revoke(self, token_id: str) -> bool:
        """Revoke a token by its public id; False when there is none."""
        doc = await self.tokens.find_one_and_update(
            {"id": token_id}, {"$set": {"revoked": True}}, projection={"_id": 1})
        if doc is None:
            return False
        await self._published_revocation(doc["_id"])
        return True

    async def end_session(self, token: str) -> None:
        """Sign-out: the session token stops working here now, elsewhere once they read it."""
        digest = hash_token(token)
        result = await self.tokens.update_one({"_id": digest, "kind": "session"},
                                              {"$set": {"revoked": True}})
        if result.matched_count:
            await self._published_revocation(digest)

    async def _published_revocation(self, digest: str) -> None:
        await self.publisher.publish([token_revoked(digest)])
        if self.view.projection is not None:
            await self.view.projection.catch_up()  # refused here before this call answers

    async def announce_all(self, directory: Directory) -> None:
        """Publish the directory and every token not expired again."""
        await self.publisher.publish([directory_published(directory)])
        now = datetime.now(UTC)
        batch: list[Envelope] = []
        async for doc in self.tokens.find({}):
            batch.extend(self._facts(doc, now))
            if len(batch) >= BATCH:
                await self.publisher.publish(batch)
                batch = []
        await self.publisher.publish(batch)

    def _facts(self, doc: dict[str, Any], now: datetime) -> Iterable[Envelope]:
        kind: TokenKind = "session" if doc.get("kind") == "session" else "api"
        created = when(doc.get("created_at")) or now
        # Tokens stored before they had an expiry get the lifetime of their kind from issue.
        expires_at = when(doc.get("expires_at")) or created + self.lifetimes[kind]
        if expires_at <= now:
            return []
        if doc.get("revoked"):
            return [token_revoked(doc["_id"])]
        return [token_issued(doc["_id"], doc["user_id"], kind, expires_at)]
