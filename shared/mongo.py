"""The MongoDB client factory and index creation."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo import AsyncMongoClient, UpdateOne, monitoring
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

Document = dict[str, Any]

log = logging.getLogger("baton.mongo")
INDEX_NOT_FOUND = 27  # MongoDB's IndexNotFound


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


WRITE_LISTS = {"insert": "documents", "update": "updates", "delete": "deletes"}


class CommandCounter(monitoring.CommandListener):
    """Counts the commands (round trips) a client sends, by command name, and the
    documents each write command carries, by collection.

    A write's documents are its statements (an insert's documents, an update's or delete's
    statements; one for findAndModify): what the server must plan and apply one by one, which
    is what costs the embedded server (docs/benchmarks.md).  A multi-document update counts
    once, so the figure is a floor for those.
    """

    def __init__(
        self, count: Callable[[str], None], written: Callable[[str, int], None] | None = None
    ) -> None:
        self.count = count
        self.written = written

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.count(event.command_name)
        if self.written is None:
            return
        name, command = event.command_name, event.command
        if name in WRITE_LISTS:
            self.written(str(command.get(name, "?")), len(command.get(WRITE_LISTS[name], ())))
        elif name == "findAndModify":
            self.written(str(command.get(name, "?")), 1)

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


async def create(collection: AsyncCollection[Document], index: Index) -> None:
    """Create ``index`` on ``collection`` (idempotent)."""
    await collection.create_index(
        list(index.keys), name=index.name, unique=index.unique, **dict(index.options))


async def ensure_indexes(db: AsyncDatabase[Document], indexes: Iterable[Index]) -> None:
    """Create every index (idempotent): each service declares the indexes its queries need."""
    for index in indexes:
        await create(db[index.collection], index)


class IndexOnDemand:
    """An index created only once a document needs it, and known to exist from then on.

    Every index costs the embedded MongoDB CPU for every document written to its
    collection, even one without the indexed field (decision 36).  A writer calls
    :meth:`ensure` before it writes the first document carrying the field, so "no index"
    means "no such document" on every replica; a reader asks :meth:`exists` first and
    answers "nothing" without querying (a query on an unindexed field would scan the
    collection).  Neither ever drops the index, so once seen it is remembered: each costs
    a bool afterwards.  One instance per collection and process, shared by its writer and
    its readers.
    """

    def __init__(self, collection: AsyncCollection[Document], index: Index) -> None:
        self.collection = collection
        self.index = index
        self.known = False  # seen or created by this process: it stays

    async def ensure(self) -> None:
        """Create the index unless this process knows it exists (idempotent)."""
        if not self.known:
            await create(self.collection, self.index)
            self.known = True

    async def exists(self) -> bool:
        """Whether the index exists: one ``listIndexes`` until it is seen, none after."""
        if not self.known:
            self.known = self.index.name in await self.collection.index_information()
        return self.known

    async def restore(self) -> None:
        """After a server came back without writes it had acknowledged (a reconcile): create
        the index again if this process knew it, as it may have written documents relying on
        it since (idempotent; one ``createIndexes``)."""
        if self.known:
            self.known = False
            await self.ensure()


async def drop_retired(collection: AsyncCollection[Document], names: Iterable[str]) -> list[str]:
    """Drop the indexes an older version created and this one no longer uses (each costs
    every write of the collection; creating indexes never drops one).  Idempotent, also
    for replicas starting at once: an index another one dropped between this one's look
    and its drop is gone, as wanted.  The names this call dropped."""
    present = await collection.index_information()
    dropped = []
    for name in (name for name in names if name in present):
        if await drop_index(collection, name):
            dropped.append(name)
            log.info("dropped the retired index %s of %s", name, collection.name)
    return dropped


async def drop_index(collection: AsyncCollection[Document], name: str) -> bool:
    """Drop the index ``name``; False when it was not there (another replica's drop)."""
    try:
        await collection.drop_index(name)
    except OperationFailure as exc:
        if exc.code != INDEX_NOT_FOUND:
            raise
        return False
    return True


def replace_at(doc: Mapping[str, Any], revision: int, keep: Iterable[str] = ()) -> UpdateOne:
    """Replace the document ``doc["_id"]`` with ``doc`` if it still holds ``revision``.

    The filter is the ``_id`` alone, which the embedded MongoDB looks up directly: a filter
    on the revision too is planned over every index of the collection first, about a
    quarter of its CPU for a run's update (decision 31).  The guard moves into the update,
    a pipeline that replaces the document when its revision is still the one read.
    Otherwise it would give the document another ``_id``, which the server refuses: a lost
    race is a write error (:data:`LOST_RACE`) at the operation's index, as precise as a
    guarded filter's "matched nothing" and cheaper.  A document that is gone is matched by
    nothing.  ``keep`` names fields other writers set (a timer's lease) that the
    replacement carries over when the document has them.
    """
    new: Any = {"$literal": doc}
    if keep:
        new = {"$mergeObjects": [new, {name: f"${name}" for name in keep}]}
    moved = {"_id": {"$literal": {"revision moved from": revision}}}
    return UpdateOne({"_id": doc["_id"]}, [{"$replaceWith": {"$cond": {
        "if": {"$eq": ["$revision", revision]}, "then": new, "else": moved}}}])


# The write error of a replacement whose document another writer moved on (replace_at):
# MongoDB's ImmutableField, for the ``_id`` the lost race would have changed.
LOST_RACE = 66


def free_lease(field_name: str, now: Any) -> dict[str, Any]:
    """Match documents whose lease ``field_name`` is absent, null or expired at ``now``.

    One clause on the field rather than ``{"$or": [{f: None}, {f: {"$lte": now}}]}``: the
    embedded MongoDB plans no index for a filter with a top-level operator and scans the
    whole collection, so a poll with ``$or`` grows slower with every document ever stored
    (docs/decisions/0008-queries-the-embedded-server-can-plan.md).
    """
    return {field_name: {"$not": {"$gt": now}}}


_SEEKABLE = {"$eq", "$in", "$lt", "$lte", "$gt", "$gte"}


def serving_index(collection: str, query: Mapping[str, Any],
                  indexes: Iterable[Index]) -> str | None:
    """The index that lets the embedded MongoDB seek ``query`` instead of scanning, if any.

    Its planner needs a filter without top-level operators (``$or``, ``$and``...) and one
    field that is ``_id`` or leads an index, compared by equality, a range or ``$in``.
    Unit tests check every periodic and per-message query with this.
    """
    if any(key.startswith("$") for key in query):
        return None
    leading = {index.keys[0][0]: index for index in indexes if index.collection == collection}
    leading["_id"] = Index(collection, [("_id", 1)])
    for key, clause in query.items():
        index = leading.get(key)
        if index is None:
            continue
        if not isinstance(clause, Mapping) or (clause and set(clause) <= _SEEKABLE):
            return index.name
        if len(query) == 1 and clause == {"$exists": True} and index.options.get("sparse"):
            return index.name  # every entry of a sparse index has the field
    return None
