"""The stage-coordinator's CPU per bench run through its consumer, holder events included.

Not a test: a measuring tool for decision 40 (holder events passed over by their header).
It builds the coordinator's consumer with the intakes its process gives it, over the real
handler and run store on in-memory collections and publisher, and feeds it the records of
the bench workload as the producers encode them (value and headers): StartRun,
StepCompleted(prepare), the two WorkItemAssigned, the two WorkItemCompleted,
StepCompleted(close), each kind one batch of ``runs`` runs as in a burst.  It prints the
CPU per run, and that of the batch of WorkItemAssigned alone.  ``--no-hook`` leaves out
the intake's ``passes_over`` (every holder event parsed and decided, as before).  Run it
alone, alternating:

    .venv/bin/python -m tests.bench.holder_events_cost [runs] [rounds] [--no-hook]
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry

from contracts.envelope import Envelope
from contracts.events.commands import StartRun
from contracts.events.steps import StepCompleted
from contracts.events.workitems import WorkItemAssigned, WorkItemCompleted
from contracts.topics import COMMANDS, STEPS_OUTCOMES, WORKITEMS_EVENTS
from services.stage_coordinator.handler import (
    WORK_ITEM_TYPES,
    CoordinatorHandler,
    from_work_items,
    known_holders,
)
from services.stage_coordinator.metrics import CoordinatorMetrics
from services.stage_coordinator.store import RunStore
from shared.definitions.loading import load_definition
from shared.definitions.validate import validate_definition
from shared.messaging import BatchConsumer, Intake
from shared.metrics import ServiceMetrics
from shared.outgoing import outgoing
from shared.settings import ServiceSettings
from tests.bench.workload import DEFINITION

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
PEOPLE = ((2, "legal", "alice"), (3, "finance", "bob"))


class Collection:
    """Takes every write, finds nothing (each run is new, then cached)."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def bulk_write(self, ops: list[Any], ordered: bool = False) -> Any:
        return SimpleNamespace(modified_count=sum(type(op).__name__ == "UpdateOne"
                                                  for op in ops))

    async def insert_many(self, docs: list[Any], ordered: bool = False) -> Any:
        return SimpleNamespace(inserted_ids=[d["_id"] for d in docs])

    def find(self, *args: Any, **kwargs: Any) -> Any:
        async def to_list(length: Any) -> list[Any]:
            return []
        return SimpleNamespace(to_list=to_list)

    async def find_one(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def update_one(self, *args: Any, **kwargs: Any) -> None:
        return None


class Database:
    def __getitem__(self, name: str) -> Collection:
        return Collection(name)


class Publisher:
    async def publish(self, envelopes: Any) -> None:
        list(envelopes)

    async def send(self, messages: Any) -> None:
        list(messages)


class Definitions:
    def __init__(self) -> None:
        self.definition = validate_definition(load_definition(DEFINITION, fmt="yaml"),
                                              known_actions=frozenset({"noop"}))

    async def get(self, name: str, version: int | None = None) -> Any:
        return self.definition


def coordinator(hook: bool) -> BatchConsumer:
    """The consumer as services/stage_coordinator/__main__.py builds it, on the fakes."""
    store = RunStore(Database(), Publisher())  # type: ignore[arg-type]
    ledger = store.outboxes.ledger
    ledger.last, ledger.writer = T0, "bench-writer"

    async def stamp() -> datetime:  # no clock, no MongoDB: the next millisecond
        ledger.last += timedelta(milliseconds=1)
        ledger.in_flight[ledger.last] = asyncio.get_running_loop().create_future()
        return ledger.last
    store.outboxes.stamp = stamp  # type: ignore[method-assign]
    handler = CoordinatorHandler(store, Definitions(), Publisher(),  # type: ignore[arg-type]
                                 CoordinatorMetrics(CollectorRegistry()))
    passes_over = known_holders(store.cache) if hook else None
    return BatchConsumer(
        topics=(COMMANDS, STEPS_OUTCOMES, WORKITEMS_EVENTS), group_id="stage-coordinator",
        handler=handler, publisher=Publisher(),  # type: ignore[arg-type]
        metrics=ServiceMetrics(CollectorRegistry(), "stage-coordinator"),
        settings=ServiceSettings(), accepts=lambda e: bool(e.run_id),
        intakes={WORKITEMS_EVENTS: Intake(types=WORK_ITEM_TYPES, adapt=from_work_items,
                                          passes_over=passes_over)})


def batches(prefix: str, runs: int) -> list[list[Any]]:
    """A bench run's records, one batch per kind, as the producers encode them."""
    ids = [f"{prefix}{i:05d}" for i in range(runs)]
    offsets = iter(range(10**9))

    def record(payload: Any, run_id: str, n: int, seconds: int) -> Any:
        event_id = f"{run_id}-m{n}"
        message = outgoing(Envelope(
            event_id=event_id, type=payload.TYPE, schema_version=payload.VERSION,
            occurred_at=T0 + timedelta(seconds=seconds), run_id=run_id,
            correlation_id=event_id, producer="bench", payload=payload))
        return SimpleNamespace(topic=message.topic, partition=0, offset=next(offsets),
                               key=message.key, value=message.value,
                               headers=list(message.headers))

    return [
        [record(StartRun(orchestration="bench", requested_by="bench"), r, 0, 0) for r in ids],
        [record(StepCompleted(step="prepare", attempt=1, outputs={"ok": True}), r, 1, 1)
         for r in ids],
        [record(WorkItemAssigned(work_item_id=f"{r}:{step}:1", step=step, actor="system",
                                 assignee_kind="user", assignee=user, recipients=[user]),
                r, 10 + n, 1) for r in ids for n, step, user in PEOPLE],
        [record(WorkItemCompleted(work_item_id=f"{r}:{step}:1", step=step, actor=user,
                                  attempt=1, outputs={"ok": True}), r, n, n)
         for r in ids for n, step, user in PEOPLE],
        [record(StepCompleted(step="close", attempt=1), r, 4, 4) for r in ids],
    ]


async def drive(consumer: BatchConsumer, prefix: str, runs: int) -> tuple[float, float]:
    """CPU seconds of the whole runs, and of their WorkItemAssigned batch."""
    store = consumer.handler.store
    total = assigned = 0.0
    work = batches(prefix, runs)
    gc.collect()
    for kind, batch in enumerate(work):
        began = time.process_time()
        await consumer.consume(batch)
        await store.finished()
        spent = time.process_time() - began
        total += spent
        assigned += spent if kind == 2 else 0.0
    return total, assigned


async def main() -> None:
    numbers = [int(a) for a in sys.argv[1:] if a.isdigit()]
    runs, rounds = (numbers + [200, 10][len(numbers):])[:2]
    consumer = coordinator(hook="--no-hook" not in sys.argv)
    await drive(consumer, "warm-", runs)
    spent = [await drive(consumer, f"b{k}-", runs) for k in range(rounds)]
    whole = sorted(total / runs * 1e6 for total, _ in spent)
    held = sorted(assigned / runs * 1e6 for _, assigned in spent)
    middle = rounds // 2
    print(f"µs of CPU per run: median {whole[middle]:.0f} (min {whole[0]:.0f}); its two"
          f" WorkItemAssigned: median {held[middle]:.1f} (min {held[0]:.1f});"
          f" {rounds} x {runs} runs, {'without' if '--no-hook' in sys.argv else 'with'}"
          " the holders hook")


if __name__ == "__main__":
    asyncio.run(main())
