"""The MongoDB client factory and index creation."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]


def make_client(
    uri: str, *, app_name: str, listeners: Sequence[monitoring.CommandListener] = ()
) -> AsyncMongoClient[Document]:
    """One client per process; pooled connections are reused by every handler."""
    return AsyncMongoClient(
        uri,
        appname=app_name,
        serverSelectionTimeoutMS=10_000,
        connectTimeoutMS=5_000,
        tz_aware=True,
        event_listeners=list(listeners),
    )


class CommandCounter(monitoring.CommandListener):
    """Counts the commands (round trips) a client sends, by command name."""

    def __init__(self, count: Callable[[str], None]) -> None:
        self.count = count

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.count(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@dataclass(frozen=True)
class Index:
    collection: str
    keys: Sequence[tuple[str, int]]
    unique: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return "_".join(f"{k}_{d}" for k, d in self.keys)


async def ensure_indexes(db: AsyncDatabase[Document], indexes: Iterable[Index]) -> None:
    """Create every index (idempotent): each service declares the indexes its queries need."""
    for index in indexes:
        await db[index.collection].create_index(
            list(index.keys), name=index.name, unique=index.unique, **dict(index.options)
        )
