"""Every periodic and per-message query is one the embedded MongoDB can seek, not scan.

A poll that scans grows slower with every document ever stored: the soak found the timer
poll and the notification lease, both with a top-level ``$or``, scanning all runs and all
deliveries twice a second (decision 8).  These checks run the services' own query builders
against the indexes the services declare.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.assignment import gauges as item_gauges
from services.assignment import guide as assignment_guide
from services.assignment import lookup
from services.assignment.core.directory import Directory
from services.assignment.handler import Dispatches
from services.assignment.store import ACTIVE, BACKFILL_FIELDS, PACKING, WORK_ITEMS
from services.assignment.store import INDEXES as ITEM_INDEXES
from services.notification import delivery_log
from services.notification import store as deliveries
from services.stage_coordinator import jobs, listing
from services.stage_coordinator.api import visible_to
from services.stage_coordinator.history import INDEXES as HISTORY_INDEXES
from services.stage_coordinator.history import RUN_HISTORY
from services.stage_coordinator.store import ACTIVE_KEY_INDEX, ACTIVE_RUNS, RUNS, TIMERS_INDEX
from services.stage_coordinator.store import INDEXES as RUN_INDEXES
from services.trigger.starts import INDEXES as START_INDEXES
from services.trigger.starts import STARTS
from shared.auth import Principal
from shared.mongo import Index, free_lease, serving_index
from shared.spine.mongo_marks import stamped_query
from shared.spine.mongo_store import timers_index
from shared.spine.stamp_keys import stamps_keys, window_keys

NOW = datetime(2026, 11, 22, tzinfo=UTC)
DIRECTORY = Directory.from_document({
    "users": [{"id": "ann", "groups": ["legal"], "queues": ["intake"]}],
    "groups": [{"id": "legal"}], "queues": [{"id": "intake"}],
})


def test_a_top_level_or_is_a_scan() -> None:
    indexes = [Index("c", [("a", 1)])]
    assert serving_index("c", {"a": 1, "$or": [{"b": 1}, {"b": None}]}, indexes) is None
    assert serving_index("c", {"b": 1}, indexes) is None
    assert serving_index("c", {"a": {"$not": {"$gt": 1}}}, indexes) is None
    assert serving_index("c", {"a": {"$exists": True}}, indexes) is None  # not sparse
    assert serving_index("c", {"a": {"$in": [1, 2]}, "b": 1}, indexes) == "a_1"
    assert serving_index("c", {"_id": "x", **free_lease("lease", NOW)}, indexes) == "_id_1"


WINDOW = window_keys("writer", NOW - timedelta(minutes=1), NOW) or []

# Which query uses which index of ``runs``: every hot query seeks, every index serves one.
# The timers' index exists once a run has had a timer, and the timer queries are sent
# only then (decision 36).
ALL_RUN_INDEXES = [*RUN_INDEXES, TIMERS_INDEX, ACTIVE_KEY_INDEX]
RUN_QUERIES = {
    "due timers": (jobs.due_timers(NOW), "next_timer_at_1"),
    "next timer": (jobs.next_timer(NOW), "next_timer_at_1"),
    "timer claim": (jobs.timer_claim("run-1", NOW, NOW), "_id_1"),
    "outboxes beyond a writer's mark": (stamped_query("lookup", WINDOW), "lookup_1"),
    "a writer's failed saves": (stamped_query("lookup", stamps_keys("writer", [NOW])),
                                "lookup_1"),
    "runs by id": ({"_id": {"$in": ["run-1"]}}, "_id_1"),
    "active runs": (ACTIVE_RUNS, "lookup_1"),
    "active runs in error": ({**ACTIVE_RUNS, "status": "error"}, "lookup_1"),
    "active steps": ({**ACTIVE_RUNS, "active_steps.started_at": {"$lte": NOW}}, "lookup_1"),
    "a second active run of a record": ({"active_key": "o|record-1"}, "active_key_1"),
}


@pytest.mark.parametrize("name", list(RUN_QUERIES))
def test_run_queries_seek(name: str) -> None:
    query, index = RUN_QUERIES[name]
    assert serving_index(RUNS, query, ALL_RUN_INDEXES) == index, query


def test_the_active_run_clause_comes_first_where_the_server_picks_it() -> None:
    """With several clauses the embedded server looks up the first indexed one alone."""
    mine = {**visible_to(Principal("ann")), "status": "error"}
    assert next(iter(listing.active_runs(mine))) == "lookup"
    assert next(iter(listing.runs_by_id(["run-1"], mine))) == "_id"
    assert next(iter(RUN_QUERIES["active steps"][0])) == "lookup"


def test_the_hot_runs_collection_keeps_three_indexes_each_serving_a_query() -> None:
    declared = {index.name for index in ALL_RUN_INDEXES if index.collection == RUNS}
    assert len(declared) <= 3
    assert TIMERS_INDEX not in RUN_INDEXES  # created by the first timer, not at start-up
    assert ACTIVE_KEY_INDEX not in RUN_INDEXES  # by the first run that holds its record
    assert declared <= {index for _, index in RUN_QUERIES.values()}


def test_a_run_and_its_history_pages_are_found_by_index() -> None:
    assert serving_index(RUN_HISTORY, {"run_ids": "run-1"}, HISTORY_INDEXES) == "run_ids_1"
    assert serving_index(RUN_HISTORY, {"_id": {"$gte": "20261122"}}, HISTORY_INDEXES)
    assert serving_index(RUN_HISTORY, {"_id": {"$lt": "~"}}, HISTORY_INDEXES)


def test_a_persons_runs_are_found_by_index_not_by_a_scan() -> None:
    person = Principal("ann", groups=frozenset({"legal"}), queues=frozenset({"intake"}))
    mine = visible_to(person)
    assert mine == {"participants": {"$in": ["user:ann", "group:legal", "queue:intake"]}}
    # Run by run (GET /runs/{id}), the active ones, or those the history pages name.
    assert serving_index(RUNS, {"_id": "run-1", **mine}, RUN_INDEXES) == "_id_1"
    assert serving_index(RUNS, listing.active_runs({**mine, "status": "error"}),
                         RUN_INDEXES) == "lookup_1"
    assert serving_index(RUNS, listing.runs_by_id(["run-1"], mine), RUN_INDEXES) == "_id_1"
    assert visible_to(Principal("op", roles=frozenset({"operator"}))) == {}


@pytest.mark.parametrize("query", [
    deliveries.claim_query(["d1", "d2"], NOW),
    deliveries.due_query(NOW),
    deliveries.upcoming_query(NOW),
    {"status": "pending"},
], ids=["claim", "due", "next retry", "pending"])
def test_delivery_queries_seek(query: dict[str, object]) -> None:
    assert serving_index(deliveries.DELIVERIES, query, deliveries.INDEXES), query


@pytest.mark.parametrize(("query", "index"), [
    (delivery_log.stored_query(["d1", "d2"]), "ids_1"),
    (delivery_log.search_query("ann"), "recipients_1_created_at_-1"),
], ids=["stored ids", "a recipient's pages"])
def test_delivery_log_queries_seek(query: dict[str, object], index: str) -> None:
    assert serving_index(delivery_log.DELIVERY_LOG, query, deliveries.INDEXES) == index


def test_the_delivery_log_keeps_three_indexes() -> None:
    declared = [i for i in deliveries.INDEXES if i.collection == delivery_log.DELIVERY_LOG]
    assert len(declared) <= 3


def test_a_lease_clause_matches_free_and_expired_leases_only() -> None:
    clause = free_lease("lease_until", NOW)["lease_until"]["$not"]
    assert clause == {"$gt": NOW}  # so: absent, null or <= now


# Which query uses which index of ``work_items`` (decision 19): every query seeks, every
# index serves one, and a person's work is one lookup of exact keys.
ANN = lookup.callers_holders("ann", DIRECTORY)
ALL_ITEM_INDEXES = [*ITEM_INDEXES, timers_index(WORK_ITEMS)]  # the timers': on demand
ITEM_QUERIES = {
    "my active work": (lookup.held_by(ANN, ACTIVE), "lookup_1"),
    "my completed work, overdue": ({**lookup.held_by(ANN, ["completed"]),
                                    "due_at": {"$lt": NOW}}, "lookup_1"),
    "my work in one orchestration": ({**lookup.held_by(ANN, ACTIVE), "orchestration": "o"},
                                     "lookup_1"),
    "all active items (admin, gauges)": (lookup.with_status(ACTIVE), "lookup_1"),
    "a pool's items (admin)": ({**lookup.held_by(["queue:intake"], ACTIVE),
                                "assignee_kind": "queue", "assignee": "intake"}, "lookup_1"),
    "waiting items": (assignment_guide.waiting_items(), "lookup_1"),
    "a batch's runs": (Dispatches(DIRECTORY).select([]), "lookup_1"),
    "items of runs": (lookup.of_runs(["run-1", "run-2"]), "lookup_1"),
    "one item": ({"_id": "run-1:review:1"}, "_id_1"),
    "due timers": (assignment_guide.due_timers(NOW), "next_timer_at_1"),
    "outboxes stamped": (stamped_query("lookup", WINDOW), "lookup_1"),
}


@pytest.mark.parametrize("name", list(ITEM_QUERIES))
def test_work_item_queries_seek(name: str) -> None:
    query, index = ITEM_QUERIES[name]
    assert serving_index(WORK_ITEMS, query, ALL_ITEM_INDEXES) == index, query


def test_the_hot_work_items_collection_keeps_two_indexes_each_serving_a_query() -> None:
    """Every index costs every item write on the embedded server (decisions 19, 36, 37)."""
    declared = {index.name for index in ALL_ITEM_INDEXES if index.collection == WORK_ITEMS}
    assert declared == {"lookup_1", "next_timer_at_1"}
    assert "next_timer_at_1" not in {index.name for index in ITEM_INDEXES}  # on demand
    assert declared <= {index for _, index in ITEM_QUERIES.values()}


# The orders the Work Guide lists items in (its API and its pages).
ITEM_ORDERS = ["due_at", "created_at", "updated_at"]


def field_paths(value: Any) -> set[str]:
    """The document fields an aggregation stage names (``"$field"`` values)."""
    if isinstance(value, str):
        return {value[1:].split(".")[0]} if value.startswith("$") else set()
    if isinstance(value, dict):
        return set().union(*map(field_paths, value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*map(field_paths, value)) if value else set()
    return set()


def test_no_work_item_query_sort_index_or_aggregation_names_a_packed_field() -> None:
    """The server cannot look inside the packed value (decision 32): what it reads stays."""
    named = {key.split(".")[0] for query, _ in ITEM_QUERIES.values() for key in query}
    named |= {key for index in ITEM_INDEXES for key, _ in index.keys}
    named |= set(ITEM_ORDERS) | set(BACKFILL_FIELDS)
    named |= field_paths(item_gauges.pipeline(NOW)[1:])  # its $match is a query above
    assert {"lookup", "due_at", "assignee_kind", "status", "created_at"} <= named
    assert named & PACKING.fields == set()


def test_my_work_asks_for_exact_keys_of_one_field() -> None:
    """One ``$in`` on one field: a second operator clause (``status: {$in}``) would make the
    embedded server read every item those keys ever held, finished ones too."""
    query = lookup.held_by(ANN, ACTIVE)
    assert list(query) == ["lookup"]
    assert sorted(query["lookup"]["$in"]) == sorted(
        f"{s}:{h}" for s in ACTIVE for h in ("user:ann", "group:legal", "queue:intake"))
    # The timer poll has one clause only, so no other index is planned for it.
    assert list(assignment_guide.due_timers(NOW)) == ["next_timer_at"]


def test_start_log_queries_seek() -> None:
    since = NOW - timedelta(minutes=15)
    assert serving_index(STARTS, {"at": {"$gte": since}}, START_INDEXES)
    assert serving_index(STARTS, {"at": {"$lt": since}}, START_INDEXES)
