"""The directory (users, groups, queues) in MongoDB: one document, changed under its revision.

The whole directory is one document with a revision.  Every change is decided on the
revision it read and written on condition that this is still the stored one: a
single-document conditional write is what MongoDB makes atomic, so two writers never
both win.  The loser decides again (a person's change to their own entry) or is told
(an admin's replace made against a revision someone else changed since: a conflict).
Nothing is stored that does not hold together: :meth:`Directory.from_document` checks
every reference first.

Directories are small next to the work they route: read whole and cached briefly, and a
resolution sees one consistent picture.  Older versions stored the directory section by
section (``users``, ``groups``, ``queues`` collections), which a crash or a race could
leave inconsistent; such a directory is read, while no document exists, as far as it
holds together.  The ``users`` collection stays a copy of each user's entry (read by no
other service any more); it follows each change.

Every stored change is then published on the access topic (``announce``: the people's
roles, groups and queues, which is what the other services' token checks read) before the
change is answered.  Two replicas' publishes may reach the topic out of order, and the
compacted topic keeps the last one written: so after publishing, the store reads the
directory again and publishes it too when a newer revision was stored meanwhile, which
leaves the newest revision last.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from pymongo import ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.assignment.core.directory import Directory
from services.assignment.core.rejection import Rejection

log = logging.getLogger("baton.assignment.directory")
DIRECTORY = "directory"
DOCUMENT_ID = "current"
SECTIONS = ("users", "groups", "queues")
USERS = "users"  # the copy of the users the notification service reads
CACHE_SECONDS = 2.0
ATTEMPTS = 10  # each round of racing writers lets one through
DUPLICATE_KEY = 11000


class DirectoryConflict(Exception):
    """The directory changed since the revision a change was decided on."""

    def __init__(self, expected: int) -> None:
        super().__init__(f"the directory changed since revision {expected}; read it again "
                         "and make the change on what is stored now")
        self.expected = expected


class DirectoryStore:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.db = db
        self.documents = db[DIRECTORY]
        self._cached: tuple[float, Directory] | None = None
        self._reading: asyncio.Future[Directory] | None = None
        self._generation = 0  # bumped by every write: a read begun before it is not cached
        self._reported: int | None = None  # the revision whose problems were logged
        self.announce: Callable[[Directory], Awaitable[None]] | None = None

    async def current(self, *, fresh: bool = False) -> Directory:
        """The directory, as cached for up to CACHE_SECONDS, or as stored now (``fresh``).

        When the cache runs out, the callers of that moment share one read: the Work Guide
        serves many people at once, and each reading the directory for itself was most of
        its MongoDB round trips in a burst.  Another replica may have stored a new
        directory within the last seconds: a caller about to refuse something because a
        person, group or queue is unknown asks again with ``fresh``.
        """
        if fresh:
            return await self._read()
        if self._cached and self._cached[0] > time.monotonic():
            return self._cached[1]
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(self._read())
        return await asyncio.shield(self._reading)

    async def _read(self) -> Directory:
        generation = self._generation
        stored = await self.documents.find_one({"_id": DOCUMENT_ID})
        if stored is None:
            document, revision = await self._legacy(), 0
        else:
            document = {section: stored.get(section) or [] for section in SECTIONS}
            revision = int(stored.get("revision") or 0)
        directory, problems = Directory.tolerant(document, revision)
        if problems and self._reported != revision:
            self._reported = revision
            log.warning("the stored directory (revision %d) does not hold together; read "
                        "without what is broken (store it again to repair it): %s",
                        revision, "; ".join(problems)[:2000])
        if generation == self._generation:
            self._cached = (time.monotonic() + CACHE_SECONDS, directory)
        return directory

    async def _legacy(self) -> dict[str, list[dict[str, Any]]]:
        document: dict[str, list[dict[str, Any]]] = {}
        for section in SECTIONS:
            docs = await self.db[section].find({}, {"directory_revision": 0}).to_list(None)
            document[section] = [{**{k: v for k, v in d.items() if k != "_id"}, "id": d["_id"]}
                                 for d in docs]
        return document

    async def load(self, document: Mapping[str, Any], *,
                   revision: int | None = None) -> Directory:
        """Replace the directory with a checked document (the examples/directory.yaml shape).

        With ``revision``, only if that is still the stored one (else DirectoryConflict):
        an admin who read the directory, edited it and stores it back loses nobody's
        change made in between.  Without, whatever is stored is replaced.
        Raises DirectoryError (every problem listed) for a document that does not hold
        together.
        """
        directory = Directory.from_document(document)
        if revision is not None:
            return await self._write(directory, revision)
        for _ in range(ATTEMPTS):
            try:
                return await self._write(directory, (await self._read()).revision)
            except DirectoryConflict:
                continue
        raise DirectoryConflict((await self._read()).revision)

    async def change_user(self, user_id: str, changes: Mapping[str, Any]) -> Directory | Rejection:
        """Change one user's own settings, and nothing else, on the directory stored now."""
        for attempt in range(ATTEMPTS):
            current = await self._read()
            changed = current.with_user_changed(user_id, changes)
            if isinstance(changed, Rejection):
                return changed
            try:
                return await self._write(changed, current.revision)
            except DirectoryConflict:  # someone else's change landed first: apply ours to theirs
                await asyncio.sleep(0.01 * attempt)
        return Rejection("the directory is changing right now; try again", "conflict")

    async def _write(self, directory: Directory, revision: int) -> Directory:
        stored = directory.model_copy(update={"revision": revision + 1})
        body = {**stored.to_document(), "revision": stored.revision,
                "updated_at": datetime.now(UTC)}
        if revision == 0:
            try:
                await self.documents.insert_one({"_id": DOCUMENT_ID, **body})
            except DuplicateKeyError:
                raise DirectoryConflict(revision) from None
        else:
            result = await self.documents.replace_one(
                {"_id": DOCUMENT_ID, "revision": revision}, body)
            if result.matched_count == 0:
                raise DirectoryConflict(revision)
        self._generation += 1
        self._cached = None
        await self._copy_users(stored)
        await self._announce(stored)
        return stored

    async def _announce(self, directory: Directory) -> None:
        if self.announce is None:
            return
        for _ in range(ATTEMPTS):
            await self.announce(directory)
            newest = await self._read()
            if newest.revision <= directory.revision:
                return
            directory = newest  # stored by another writer while this one published

    async def _copy_users(self, directory: Directory) -> None:
        """Bring the users' copy to this revision; a newer revision's copy is left alone.

        A removed user's copy becomes a marker of the revision that removed them (no
        contact left), so an older revision's copy landing late cannot bring them back.
        """
        revision, users = directory.revision, self.db[USERS]
        older = {"$not": {"$gte": revision}}
        gone = [doc["_id"] async for doc in users.find(
            {"_id": {"$nin": list(directory.users)}, "directory_revision": older}, {"_id": 1})]
        ops = [ReplaceOne({"_id": user.id, "directory_revision": older},
                          {**user.model_dump(mode="json", exclude={"id"}),
                           "directory_revision": revision}, upsert=True)
               for user in directory.users.values()]
        ops += [ReplaceOne({"_id": user_id, "directory_revision": older},
                           {"removed": True, "directory_revision": revision})
                for user_id in gone]
        if not ops:
            return
        try:
            await users.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:  # an upsert that met a newer copy: that one stays
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != DUPLICATE_KEY for error in errors):
                raise
