"""Server CPU per replaced document on the embedded MongoDB, by indexes and update form.

Not a test: a measuring tool for the store's per-document cost (docs/benchmarks.md, the
spine's seventh and eighth parts).  It starts one SecantusDB of its own, inserts 200
documents shaped like a run's (packed state, two active steps, an outbox stamp, an active
key, lookup keys), replaces each ten times in bulk writes of 200, and prints the server's
CPU per replaced document for each collection set-up, the set-ups taking turns.  With
``--shapes`` it compares document shapes instead, on the runs' two indexes: the run floor's
three-field document, a run and a work item as Baton writes them, and each without what a
design step would take off it (docs/benchmarks.md, the spine's tenth part).  Run it alone:

    .venv/bin/python -m tests.bench.store_update_cost [--shapes] [rounds]
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient, InsertOne, ReplaceOne
from pymongo.operations import UpdateOne

from infra import processes
from infra.embedded import secantus_binary
from shared.mongo import replace_at

ROUNDS = 10
DOCUMENTS = 200
NOW = datetime(2026, 11, 30, tzinfo=UTC)
TIMERS = [("next_timer_at", 1)]
OUTBOX = [("outbox_by", 1), ("outbox_at", 1)]
ACTIVE = [("active_key", 1)]
LOOKUP = [("lookup", 1)]
# The document below is a run as written before decisions 36 and 37 (its stamp and its
# active_key indexed) and since (its ``lookup`` keys; no active_key unless exclusive per
# record, no next_timer_at without a timer): each set-up indexes the fields it names.
SETUPS: dict[str, list[list[tuple[str, int]]]] = {
    "runs before decisions 36-37 (3 indexes)": [TIMERS, OUTBOX, ACTIVE],
    "runs since (lookup, active_key)": [LOOKUP, ACTIVE],
    "lookup alone": [LOOKUP],
    "no index": [],
}


def run_document(number: int, revision: int) -> dict[str, Any]:
    return {"_id": f"run-{number:06d}", "orchestration": "bench", "version": 1,
            "status": "running", "stage": "review", "timers": [], "started_by": "system",
            "participants": ["user:alice", "user:bob"], "created_at": NOW, "updated_at": NOW,
            "stage_entries": 2, "exclusive_per_record": False, "revision": revision,
            "outbox_at": NOW, "outbox_by": "writer-1", "active_key": f"run:{number}",
            "lookup": ["active", f"outbox:writer-1:2026-11-30T00:00:{revision % 6}0"],
            "active_steps": [{"stage": "review", "step": step, "kind": "interactive",
                              "started_at": NOW, "dispatch": b"d" * 700}
                             for step in ("legal", "finance")],
            "outbox": b"o" * 1800, "pending_history": b"h" * 1000, "state": b"s" * 1500}


def floor_document(number: int, revision: int) -> dict[str, Any]:
    """The run floor's document (tests/bench/run_floor.py)."""
    return {"_id": f"run-{number:06d}", "revision": revision, "status": "running"}


def floor_with_keys(number: int, revision: int) -> dict[str, Any]:
    return {**floor_document(number, revision), "lookup": ["active", "outbox:writer-1:b"]}


def run_as_written(number: int, revision: int) -> dict[str, Any]:
    doc = run_document(number, revision)
    del doc["active_key"]  # absent unless the orchestration allows one active run per record
    return doc


def run_one_key(number: int, revision: int) -> dict[str, Any]:
    """Without the outbox stamp's key (found some other way)."""
    return {**run_as_written(number, revision), "lookup": ["active"]}


def run_what_the_server_reads(number: int, revision: int) -> dict[str, Any]:
    """Only what queries name kept outside the packed state (participants, active steps,
    the plain fields of the lists and gauges inside it: what no query could then find)."""
    return {"_id": f"run-{number:06d}", "revision": revision, "status": "running",
            "lookup": ["active", "outbox:writer-1:b"], "outbox_at": NOW, "outbox_by": "writer-1",
            "outbox": b"o" * 1800, "pending_history": b"h" * 1000, "state": b"s" * 3000}


def item_as_written(number: int, revision: int) -> dict[str, Any]:
    """A work item: its plain fields (services/assignment/store.py PLAIN) and four keys."""
    run = f"run-{number:06d}"
    return {"_id": f"{run}:legal:1", "revision": revision, "outbox": b"o" * 1500,
            "outbox_at": NOW, "outbox_by": "writer-1", "timers": [],
            "lookup": [f"run:{run}", "open:*", "open:user:alice", "outbox:writer-1:b"],
            "orchestration": "bench", "due_at": None, "created_at": NOW, "updated_at": NOW,
            "run_id": run, "status": "open", "assignee_kind": "user", "assignee": "alice",
            "claimed_by": None, "delegated_to": None, "delegated_from": None, "step": "legal",
            "state": b"s" * 1500}


def item_three_keys(number: int, revision: int) -> dict[str, Any]:
    doc = item_as_written(number, revision)
    return {**doc, "lookup": doc["lookup"][:3]}


SHAPES: dict[str, Callable[[int, int], dict[str, Any]]] = {
    "the run floor's document": floor_document,
    "the same with two lookup keys": floor_with_keys,
    "a run as written": run_as_written,
    "a run without the stamp's key": run_one_key,
    "a run with only what queries read": run_what_the_server_reads,
    "a work item as written": item_as_written,
    "a work item without the stamp's key": item_three_keys,
}


def guarded_filter(doc: dict[str, Any], revision: int) -> ReplaceOne[Any]:
    return ReplaceOne({"_id": doc["_id"], "revision": revision}, doc)


FORMS: dict[str, Callable[[dict[str, Any], int], UpdateOne | ReplaceOne[Any]]] = {
    "replace_at (by _id, guard in the update)": replace_at,
    "ReplaceOne under {_id, revision}": guarded_filter,
}


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(client: AsyncMongoClient[dict[str, Any]], pid: int, name: str,
                  indexes: list[list[tuple[str, int]]],
                  form: Callable[[dict[str, Any], int], Any],
                  document: Callable[[int, int], dict[str, Any]] = run_document) -> float:
    """Server CPU ms per replaced document for one set-up, in a fresh collection."""
    collection = client["store_cost"][name]
    await collection.drop()
    for keys in indexes:
        await collection.create_index(keys, sparse=True, unique=keys == ACTIVE)
    await collection.bulk_write([InsertOne(document(n, 1)) for n in range(DOCUMENTS)])
    before = cpu_seconds(pid)
    for revision in range(1, ROUNDS + 1):
        result = await collection.bulk_write(
            [form(document(n, revision + 1), revision) for n in range(DOCUMENTS)],
            ordered=False)
        assert result.modified_count == DOCUMENTS, result.bulk_api_result
    return (cpu_seconds(pid) - before) * 1000 / (ROUNDS * DOCUMENTS)


async def compare(client: AsyncMongoClient[dict[str, Any]], pid: int, repeats: int,
                  shapes: bool) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {}
    for _ in range(repeats):  # the set-ups take turns: the machine's speed drifts
        if shapes:
            for label, document in SHAPES.items():
                figures.setdefault(label, []).append(
                    await measure(client, pid, "shape", SETUPS["runs since (lookup, active_key)"],
                                  replace_at, document))
            continue
        for setup, indexes in SETUPS.items():
            figures.setdefault(setup, []).append(
                await measure(client, pid, "setup", indexes, replace_at))
        for label, form in FORMS.items():
            figures.setdefault(label, []).append(
                await measure(client, pid, "form",
                              SETUPS["runs before decisions 36-37 (3 indexes)"], form))
    return figures


async def main(repeats: int = 3, shapes: bool = False) -> None:
    folder = Path(tempfile.mkdtemp(prefix="store-cost-"))
    port = processes.free_port()
    server = processes.spawn(
        [secantus_binary(), "--host", "127.0.0.1", "--port", str(port), "--storage-path",
         str(folder / "data"), "--log-level", "WARNING", "--standalone"],
        log_path=folder / "server.log")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{port}/?directConnection=true")
    try:
        for _ in range(100):
            try:
                await client.admin.command("ping")
                break
            except Exception:  # the server is still starting
                await asyncio.sleep(0.2)
        figures = await compare(client, server.pid, repeats, shapes)
        for label, values in figures.items():
            print(f"{label:45} median {statistics.median(values):.3f}, min {min(values):.3f}"
                  " (" + " ".join(f"{v:.3f}" for v in values) + ") ms per document")
    finally:
        await client.close()
        processes.stop(server, timeout=20.0)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    numbers = [int(a) for a in sys.argv[1:] if a.isdigit()]
    asyncio.run(main(numbers[0] if numbers else 3, shapes="--shapes" in sys.argv))
