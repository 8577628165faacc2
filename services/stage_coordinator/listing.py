"""Lists of runs (GET /runs) without an index of their own on the hot ``runs`` collection.

``runs`` keeps three indexes (store.py, decisions 14 and 37), so a list finds its runs another
way:
- active runs (running, suspended, error) through their ``active`` key, all of them read
  and the newest kept;
- any other list walks the run history's pages newest first, reading the runs they name by
  ``_id``, a chunk at a time, until the list is full or :data:`MAX_EXAMINED` runs were
  looked at: recent runs are listed at once; a list that matches only old runs may come
  back short (narrow it by an active status, or look the run up by id).
Runs come most recently changed first.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from services.stage_coordinator.history import recent_run_ids
from services.stage_coordinator.store import ACTIVE_RUNS

ACTIVE_STATUSES = frozenset({"running", "suspended", "error"})
PROJECTION = {"orchestration": 1, "version": 1, "status": 1, "stage": 1, "record_key": 1,
              "created_at": 1, "updated_at": 1, "finished_at": 1, "error": 1}
CHUNK = 500
MAX_EXAMINED = 20_000

Collection = AsyncCollection[dict[str, Any]]


async def list_runs(runs: Collection, history: Collection, query: dict[str, Any],
                    limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` runs matching ``query`` (equality clauses), newest change first."""
    if query.get("status") in ACTIVE_STATUSES:
        found = await runs.find(active_runs(query), PROJECTION).to_list(None)
    else:
        found = await _walk(runs, history, query, limit)
    found.sort(key=_changed_at, reverse=True)
    return found[:limit]


def _changed_at(doc: dict[str, Any]) -> datetime:
    changed = doc.get("updated_at") or doc.get("created_at")
    if not isinstance(changed, datetime):
        return datetime.min.replace(tzinfo=UTC)
    return changed if changed.tzinfo else changed.replace(tzinfo=UTC)


async def _walk(runs: Collection, history: Collection, query: dict[str, Any],
                limit: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    seen: set[str] = set()
    chunk: list[str] = []
    async for run_ids in recent_run_ids(history):
        chunk.extend(rid for rid in run_ids if rid not in seen)
        seen.update(run_ids)
        if len(chunk) >= CHUNK:
            found.extend(await _matching(runs, chunk, query))
            chunk = []
            if len(found) >= limit or len(seen) >= MAX_EXAMINED:
                return found
    if chunk:
        found.extend(await _matching(runs, chunk, query))
    return found


async def _matching(runs: Collection, run_ids: list[str], query: dict[str, Any]
                    ) -> list[dict[str, Any]]:
    return await runs.find(runs_by_id(run_ids, query), PROJECTION).to_list(None)


def active_runs(query: dict[str, Any]) -> dict[str, Any]:
    """The active-run clause (``lookup``) first: the embedded server looks up the first
    indexed clause."""
    return {**ACTIVE_RUNS, **query}


def runs_by_id(run_ids: list[str], query: dict[str, Any]) -> dict[str, Any]:
    return {"_id": {"$in": run_ids}, **query}
