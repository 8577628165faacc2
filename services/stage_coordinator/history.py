"""The run history: an append-only collection of pages, one page per consumed batch.

A page holds the history entries (domain events with who, why and what changed) that
one batch saved, for up to :data:`RUNS_PER_PAGE` runs: in a burst one insert carries the
history of many runs, so the history costs a fraction of a written document per run
instead of one per transition (docs/decisions/0014-run-history-collection.md).

Every entry carries its ``run_id`` and the run ``revision`` it produced: the pair is the
entry's identity.  A page may repeat entries another page holds already (the history of
a run saved but not yet paged when a process stopped is paged again by the next owner);
readers keep one entry per revision, in revision order.

Each entry is packed, one BSON value (decision 27): pages written before hold them as
subdocuments, and readers open both.

A page's ``_id`` starts with the time of its first entry, so pages sort by time without
an index; ``run_ids`` (multikey, the collection's one secondary index) finds a run's pages.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from shared.mongo import Index
from shared.packed import opened_all, packed

RUN_HISTORY = "run_history"
RUNS_PER_PAGE = 50
PAGE_BYTES = 4 * 1024 * 1024
DUPLICATE_KEY = 11000
INDEXES = [Index(RUN_HISTORY, [("run_ids", 1)])]

Entry = dict[str, Any]
# Beside the event's own fields: its cause, what it changed, and its identity here.
ENTRY_KEYS = frozenset({"cause", "cause_id", "changes", "run_id", "revision"})


def numbered(run_id: str, before: int, entries: Sequence[Entry]) -> list[Entry]:
    """The entries of a transition, each with its run id and the revision it produced.

    ``before`` is the run's revision before the transition: the revision counts the events
    applied, so the n-th event of the transition produces ``before + n``.
    """
    return [{**entry, "run_id": run_id, "revision": before + n}
            for n, entry in enumerate(entries, start=1)]


def event_of(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The domain event of a history entry (what replay takes), without what rides along."""
    event = {k: v for k, v in entry.items() if k not in ENTRY_KEYS}
    if entry.get("kind") == "RunCreated" and "run_id" in entry:
        event["run_id"] = entry["run_id"]  # a field of that event, too
    return event


def pages(histories: Iterable[Sequence[Entry]],
          packed_as: Iterable[Sequence[bytes]] | None = None) -> list[dict[str, Any]]:
    """Page documents for the unpaged histories of some runs (one sequence per run).

    At most :data:`RUNS_PER_PAGE` runs and about :data:`PAGE_BYTES` a page, far below
    MongoDB's 16 MB a document, whatever the runs' records and outputs weigh.  Each entry
    is packed, one value (decision 27); ``packed_as`` gives them packed already (as the
    run's save wrote them into ``pending_history``), one sequence per history.
    """
    chunks: list[list[tuple[Sequence[Entry], Sequence[bytes]]]] = [[]]
    size = 0
    known = iter(packed_as) if packed_as is not None else None
    for history in histories:
        given = next(known, None) if known is not None else None
        if not history:
            continue
        entries = given if given is not None and len(given) == len(history) else [
            packed(entry) for entry in history]
        weight = sum(map(len, entries))
        if chunks[-1] and (len(chunks[-1]) == RUNS_PER_PAGE or size + weight > PAGE_BYTES):
            chunks.append([])
            size = 0
        chunks[-1].append((history, entries))
        size += weight
    return [_page(chunk) for chunk in chunks if chunk]


def _page(histories: list[tuple[Sequence[Entry], Sequence[bytes]]]) -> dict[str, Any]:
    first = histories[0][0][0]
    return {
        "_id": page_id(first),
        "at": first.get("at"),
        "run_ids": [history[0]["run_id"] for history, _ in histories],
        "entries": [entry for _, entries in histories for entry in entries],
    }


def page_id(first: Mapping[str, Any]) -> str:
    """Deterministic, from the page's first entry: writing the same page again is a no-op.

    The time comes first so that ``_id`` order is (about) time order.
    """
    at = first.get("at")
    stamp = _stamp(at) if isinstance(at, datetime) else str(at)
    identity = f"{first['run_id']}\x00{first['revision']}".encode()
    return f"{stamp}|{hashlib.sha256(identity).hexdigest()[:16]}"


def _stamp(at: datetime) -> str:
    utc = at.astimezone(UTC) if at.tzinfo else at
    return utc.strftime("%Y%m%dT%H%M%S.%f")


async def write_pages(history: AsyncCollection[dict[str, Any]],
                      documents: list[dict[str, Any]]) -> int:
    """Insert pages in one round trip; a page already there (same ``_id``) is skipped."""
    if not documents:
        return 0
    try:
        result = await history.insert_many(documents, ordered=False)
        return len(result.inserted_ids)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors) or exc.details.get(
                "writeConcernErrors"):
            raise
        return len(documents) - len(errors)


async def read_history(history: AsyncCollection[dict[str, Any]], run: Mapping[str, Any]
                       ) -> list[Entry]:
    """The whole history of ``run`` (a run document), oldest first, one entry per revision.

    From its pages, and from the run document: the entries saved with the run but not paged
    yet (``pending_history``) and, for runs stored before the history moved out of the run
    document, the old ``history`` array.
    """
    run_id = run["_id"]
    cursor = history.find({"run_ids": run_id}, {"entries": 1}).sort("_id", 1)
    paged = [entry async for page in cursor for entry in opened_all(page.get("entries"))]
    legacy = [{**entry, "run_id": run_id, "revision": revision}
              for revision, entry in enumerate(run.get("history") or [], start=1)]
    pending = opened_all(run.get("pending_history"))
    return in_revision_order(run_id, [*legacy, *paged, *pending])


def in_revision_order(run_id: str, entries: Iterable[Mapping[str, Any]]) -> list[Entry]:
    """The entries of ``run_id`` among ``entries``, one per revision, oldest first."""
    kept: dict[int, Entry] = {}
    for entry in entries:
        if entry.get("run_id") == run_id:
            kept.setdefault(int(entry["revision"]), dict(entry))
    return [kept[revision] for revision in sorted(kept)]


async def runs_changed_since(history: AsyncCollection[dict[str, Any]], since: datetime,
                             limit: int) -> tuple[list[str], bool]:
    """Ids of the runs with history since ``since``, newest first; and whether capped.

    Seeks on ``_id`` (its time prefix), reading only the pages' run ids.
    """
    cursor = history.find({"_id": {"$gte": _stamp(since)}},
                          {"run_ids": 1}).sort("_id", -1)
    seen: dict[str, None] = {}
    async for page in cursor:
        for run_id in page.get("run_ids", []):
            seen.setdefault(run_id, None)
        if len(seen) > limit:
            return list(seen)[:limit], True
    return list(seen), False


async def recent_run_ids(history: AsyncCollection[dict[str, Any]], *,
                         pages_per_read: int = 20) -> AsyncIterator[list[str]]:
    """The run ids of each page, newest page first: a keyset walk down ``_id``."""
    before = "~"  # sorts after every time stamp
    while True:
        cursor = history.find({"_id": {"$lt": before}}, {"run_ids": 1}).sort("_id", -1)
        found = await cursor.limit(pages_per_read).to_list(None)
        for page in found:
            yield list(page.get("run_ids", []))
        if len(found) < pages_per_read:
            return
        before = found[-1]["_id"]
