"""The access topic in memory: what the token checks of every service read.

The assignment service owns the directory and the tokens and publishes them on the
compacted ``access`` topic (contracts/events/access.py); each service keeps an
:class:`AccessView` of it through a projection (shared/projection.py), so checking a
token reads no database.  A token not known here may have been issued a moment ago: the
view catches up with the topic once before calling it unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import singledispatchmethod

from contracts import Envelope
from contracts.events.access import (
    AccessPerson,
    DirectoryPublished,
    TokenIssued,
    TokenRevoked,
)
from contracts.topics import ACCESS
from shared.auth import UNKNOWN, Authenticator, Principal, authenticator_for
from shared.projection import TopicProjection
from shared.runtime import Runtime

PRUNE_EVERY = 1024  # token facts applied between two drops of the long-expired ones


@dataclass(frozen=True)
class TokenFacts:
    user_id: str | None  # None: revoked before this view saw it issued
    expires_at: datetime | None
    revoked: bool = False


class AccessView:
    """The directory's people and every token's facts, as applied from the access topic."""

    def __init__(self) -> None:
        self.revision = -1
        self.people: dict[str, AccessPerson] = {}
        self.tokens: dict[str, TokenFacts] = {}
        self.projection: TopicProjection | None = None  # set once the service follows it
        self._since_prune = 0

    def apply(self, envelope: Envelope) -> None:
        self._apply(envelope.payload, envelope.occurred_at)

    @singledispatchmethod
    def _apply(self, payload: object, at: datetime) -> None:
        raise TypeError(f"{type(payload).__name__} does not belong on the access topic")

    @_apply.register
    def _directory(self, payload: DirectoryPublished, at: datetime) -> None:
        # The last one written counts, as compaction keeps it: a restarted service must see
        # what a running one sees.  (A directory restored from a backup has a lower
        # revision and still counts; the owner publishes last what it stores last.)
        self.revision = payload.revision
        self.people = {person.id: person for person in payload.people}

    @_apply.register
    def _issued(self, payload: TokenIssued, at: datetime) -> None:
        if not self.tokens.get(payload.token_hash, TokenFacts(None, None)).revoked:
            self.tokens[payload.token_hash] = TokenFacts(payload.user_id, payload.expires_at)
        self._count(at)

    @_apply.register
    def _revoked(self, payload: TokenRevoked, at: datetime) -> None:
        known = self.tokens.get(payload.token_hash, TokenFacts(None, None))
        self.tokens[payload.token_hash] = TokenFacts(known.user_id, known.expires_at, True)
        self._count(at)

    def _count(self, at: datetime) -> None:
        """Now and then, forget tokens that expired before ``at`` (the message's time): a
        use of one is then unknown rather than expired, and refused all the same."""
        self._since_prune += 1
        if self._since_prune >= PRUNE_EVERY:
            self._since_prune = 0
            self.tokens = {digest: facts for digest, facts in self.tokens.items()
                           if facts.expires_at is None or facts.expires_at > at}

    async def resolve(self, digest: str, *, catch_up: bool = True
                      ) -> tuple[datetime | None, Principal | str]:
        facts = self.tokens.get(digest)
        if facts is None and catch_up and self.projection is not None:
            await self.projection.catch_up()  # issued a moment ago, maybe
            facts = self.tokens.get(digest)
        if facts is None or facts.revoked or facts.user_id is None:
            return None, UNKNOWN
        person = self.people.get(facts.user_id)
        if person is None:
            return facts.expires_at, f"user {facts.user_id!r} is no longer in the directory"
        return facts.expires_at, Principal(facts.user_id, frozenset(person.roles),
                                           frozenset(person.groups), frozenset(person.queues))


def follow_access(runtime: Runtime) -> Authenticator:
    """The authenticator of a service that checks tokens against the access topic."""
    view = AccessView()
    view.projection = runtime.follow(ACCESS, view.apply)
    return authenticator_for(view, runtime.settings)
