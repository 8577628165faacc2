"""The keys a work item is found by: one multikey field, ``lookup``, and its one index.

The embedded MongoDB plans every written document over every index of its collection, so
each index on ``work_items`` costs every item write (decision 19).  Instead of an index per
way of finding an item, the store writes the item's keys into one array, derived here from
the fields it stores:

- ``run:<run_id>``: every item (and failed-assignment trace) of a run, whatever its status
  (the dispatch consumer's batch read, the run page, the stuck list);
- ``<status>:*``: every item with that status (the waiting job, the gauges, the admin lists);
- ``<status>:user:<id>``, ``<status>:group:<id>``, ``<status>:queue:<id>``: whose the item
  is: the user assignee, the claimer, the delegate and the one who delegated (users), the
  group or queue it is assigned to.  These are the people :func:`can_see` lets see it
  (admins aside).

The status is part of the key so that "my active work" is one lookup of exact keys: the
embedded server seeks a ``$in`` on the leading field of an index, but with a second
operator clause (``status: {$in: ...}``) it would read every item ever held by those keys
and filter afterwards, finished ones included.  Pure: no database here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from services.assignment.core.directory import Directory

LOOKUP = "lookup"
EVERYONE = "*"


def holders(state: Mapping[str, Any]) -> list[str]:
    """Whose the item is, as ``user:``/``group:``/``queue:`` keys (no duplicates)."""
    kind, assignee = state.get("assignee_kind") or "", state.get("assignee") or ""
    found = []
    if assignee and kind in ("user", "group", "queue"):
        found.append(f"{kind}:{assignee}")
    for name in ("claimed_by", "delegated_to", "delegated_from"):
        if state.get(name):
            found.append(f"user:{state[name]}")
    return list(dict.fromkeys(found))


def lookup_keys(state: Mapping[str, Any]) -> list[str]:
    """Every key of a stored work item (or of a trace with no status: its run's key only)."""
    keys = [f"run:{state['run_id']}"] if state.get("run_id") else []
    status = state.get("status")
    if status:
        keys += [f"{status}:{EVERYONE}", *(f"{status}:{h}" for h in holders(state))]
    return keys


def callers_holders(user_id: str, directory: Directory) -> list[str]:
    """The holder keys that make an item someone's: theirs, or in their groups or queues."""
    user = directory.users.get(user_id)
    keys = [f"user:{user_id}"]
    if user is not None:
        keys += [f"group:{g}" for g in user.groups] + [f"queue:{q}" for q in user.queues]
    return keys


def held_by(holder_keys: Iterable[str], statuses: Sequence[str]) -> dict[str, Any]:
    """Items with one of ``statuses`` held by any of ``holder_keys``: one indexed lookup."""
    return {LOOKUP: {"$in": [f"{s}:{h}" for s in statuses for h in holder_keys]}}


def with_status(statuses: Sequence[str]) -> dict[str, Any]:
    """Every item with one of ``statuses`` (an admin's view, the gauges, the waiting job)."""
    return held_by([EVERYONE], statuses)


def of_runs(run_ids: Iterable[str]) -> dict[str, Any]:
    """Every item of these runs, finished or not, and their failed-assignment traces."""
    return {LOOKUP: {"$in": [f"run:{r}" for r in dict.fromkeys(run_ids)]}}
