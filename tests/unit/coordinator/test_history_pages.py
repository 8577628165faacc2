"""History pages (services/stage_coordinator/history.py): what one batch writes, read back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import bson

from services.stage_coordinator.history import (
    PAGE_BYTES,
    RUNS_PER_PAGE,
    event_of,
    in_revision_order,
    numbered,
    page_id,
    pages,
)
from shared.packed import opened_all

AT = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def transition(run_id: str, before: int, *kinds: str) -> list[dict[str, object]]:
    return numbered(run_id, before, [{"kind": kind, "at": AT + timedelta(seconds=before)}
                                     for kind in kinds])


def test_entries_are_numbered_by_the_revision_they_produce() -> None:
    entries = transition("r1", 3, "StepSucceeded", "StageFinished")
    assert [(e["run_id"], e["revision"]) for e in entries] == [("r1", 4), ("r1", 5)]
    assert event_of(entries[0]) == {"kind": "StepSucceeded", "at": AT + timedelta(seconds=3)}
    created = transition("r1", 0, "RunCreated")[0]
    assert event_of(created)["run_id"] == "r1"  # a field of that event


def test_a_batch_writes_one_page_per_fifty_runs_whatever_their_entries() -> None:
    histories = [transition(f"r{i}", 0, "RunCreated", "StageEntered", "StepStarted")
                 for i in range(2 * RUNS_PER_PAGE + 1)]
    written = pages([*histories, []])
    assert [len(p["run_ids"]) for p in written] == [RUNS_PER_PAGE, RUNS_PER_PAGE, 1]
    assert sum(len(p["entries"]) for p in written) == 3 * len(histories)
    assert len({p["_id"] for p in written}) == 3


def test_a_page_written_again_has_the_same_id_and_ids_sort_by_time() -> None:
    first = pages([transition("r1", 0, "RunCreated")])[0]
    assert pages([transition("r1", 0, "RunCreated")])[0]["_id"] == first["_id"]
    later = pages([transition("r1", 5, "StepStarted")])[0]
    assert first["_id"] < later["_id"]
    assert page_id({"run_id": "r1", "revision": 1, "at": AT}).startswith("20261130T080000")


def test_reading_keeps_one_entry_per_revision_in_order_whatever_the_pages() -> None:
    one = transition("r1", 0, "RunCreated", "StageEntered")
    two = transition("r1", 2, "StepStarted")
    other = transition("r2", 0, "RunCreated")
    # A stop after the run save: the next batch pages the leftover again with its own.
    stored = [*pages([two, one]), *pages([other, [*one, *two]])]
    read = in_revision_order("r1", [e for p in reversed(stored) for e in opened_all(p["entries"])])
    assert [e["revision"] for e in read] == [1, 2, 3]
    assert [e["kind"] for e in read] == ["RunCreated", "StageEntered", "StepStarted"]


def test_heavy_histories_spread_over_pages_below_the_document_limit() -> None:
    record = {"blob": "x" * 900_000}
    heavy = [numbered(f"r{i}", 0, [{"kind": "RunCreated", "at": AT, "record": record}])
             for i in range(10)]
    written = pages(heavy)
    assert len(written) >= 3 and sum(len(p["run_ids"]) for p in written) == 10
    assert all(len(bson.encode(p)) < PAGE_BYTES + 1_000_000 for p in written)
