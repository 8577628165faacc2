"""access: who may call the services, as the assignment service (the owner) knows it.

The topic is compacted: the latest message of each key is kept, so reading it from the
beginning gives every service the current directory and every live token without asking
the owner.  Tokens are named by the SHA-256 hash of the secret; the secret itself never
travels.  The directory carries the people's roles, groups and queues only, not their
contacts (decision 9).
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.envelope import Payload
from contracts.topics import ACCESS

DIRECTORY_KEY = "directory"
TOKEN_HASH = r"^[0-9a-f]{64}$"


class AccessPerson(BaseModel):
    """One person of the directory as the token checks see them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()


class DirectoryPublished(Payload):
    """The whole directory at ``revision`` (keyed ``directory``): whoever is not in
    ``people`` has no access."""

    TYPE = "DirectoryPublished"
    VERSION = 1
    TOPIC = ACCESS

    revision: int = Field(ge=0)
    people: tuple[AccessPerson, ...] = ()


class TokenIssued(Payload):
    """A token for ``user_id`` that counts until ``expires_at`` (keyed by ``token_hash``)."""

    TYPE = "TokenIssued"
    VERSION = 1
    TOPIC = ACCESS

    token_hash: str = Field(pattern=TOKEN_HASH)
    user_id: str = Field(min_length=1, max_length=200)
    kind: Literal["api", "session"]
    expires_at: AwareDatetime


class TokenRevoked(Payload):
    """The token stopped counting (revoked, or its session signed out); keyed by
    ``token_hash``, so compaction keeps this in place of its TokenIssued."""

    TYPE = "TokenRevoked"
    VERSION = 1
    TOPIC = ACCESS

    token_hash: str = Field(pattern=TOKEN_HASH)
