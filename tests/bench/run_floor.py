"""The per-run floor: what the bench workload needs at least, in a tight loop, same servers.

Per run, decision 17 counts 14 messages Baton cannot do without (2 StepRequested, 2
WorkItemRequested, 2 StepCompleted, WorkItemAssigned and WorkItemCompleted for each of the
two people, 4 lifecycle messages) and the documents a run must write: the run once per
input that changes it (5), each work item when opened and when completed (4), and the
mails' deliveries as one page per batch (decision 23): 9 and a little. The floor does
exactly that for ``runs`` runs, in batches of ``batch`` runs (a burst, as the services see
it), with the clients Baton uses (an idempotent producer with acks=all and Baton's batch
size, a long-polling consumer, AsyncMongoClient with one bulk write per batch and
collection, each change a replacement guarded by the revision read, written as Baton
writes it: ``replace_at``, decision 31) against the same embedded servers and the
collections' real indexes: the runs on the coordinator's SecantusDB, the work items on
assignment's, the mail pages on the shared one (decision 25), each store's writes of a
batch at the same time as the others'. Nothing is decided: it is
the cost of the messages and writes alone, the least a run can cost on this machine with
these servers. Baton's burst is measured against it (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pymongo import AsyncMongoClient, InsertOne

from contracts.topics import TOPICS
from infra.embedded import OWN_STORES, EmbeddedServers
from services.assignment.store import INDEXES as WORK_ITEM_INDEXES
from services.notification.store import INDEXES as DELIVERY_INDEXES
from services.stage_coordinator.store import INDEXES as RUN_INDEXES
from shared.messaging import PRODUCER_BATCH_BYTES
from shared.mongo import ensure_indexes, replace_at
from shared.topics import TopicPolicy, ensure_topics

MESSAGES_PER_RUN = 14
TOPIC = "runs.events"
# About the size of Baton's messages: an envelope with a work item's fields and contacts.
MESSAGE = b"{" + b'"x":"' + b"y" * 900 + b'"}'


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_floor(workdir: Path, runs: int = 1_000, batch: int = 200) -> dict[str, Any]:
    servers = EmbeddedServers(workdir / "run-floor", own_stores=OWN_STORES).start()
    try:
        await ensure_topics(servers.kafka_bootstrap, TOPICS, TopicPolicy(partitions=4))
        producer = AIOKafkaProducer(bootstrap_servers=servers.kafka_bootstrap,
                                    enable_idempotence=True, acks="all", linger_ms=1,
                                    max_batch_size=PRODUCER_BATCH_BYTES)
        consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=servers.kafka_bootstrap,
                                    group_id="run-floor", auto_offset_reset="latest",
                                    enable_auto_commit=False, fetch_max_wait_ms=1000)
        clients: list[AsyncMongoClient[dict[str, Any]]] = [
            AsyncMongoClient(servers.store_uri(service))
            for service in ("stage-coordinator", "assignment", "notification")]
        dbs = [client["run_floor"] for client in clients]
        await ensure_indexes(dbs[0], RUN_INDEXES)
        await ensure_indexes(dbs[1], WORK_ITEM_INDEXES)  # the spine's included
        await ensure_indexes(dbs[2], DELIVERY_INDEXES)
        await producer.start()
        await consumer.start()
        try:
            await _settle(producer, consumer)
            pids = {**{name: proc.pid for name, proc in servers.procs.items()},
                    "floor client": os.getpid()}
            before = {k: cpu_seconds(p) for k, p in pids.items()}
            began = time.perf_counter()
            for first in range(0, runs, batch):
                await _one_batch(dbs, producer, consumer, first, min(batch, runs - first))
            seconds = time.perf_counter() - began
            cpu = {k: cpu_seconds(p) - before[k] for k, p in pids.items()}
        finally:
            await producer.stop()
            await consumer.stop()
            for client in clients:
                await client.close()
    finally:
        servers.stop()
    return {
        "scenario": "run-floor", "runs": runs, "batch": batch,
        "messages_per_run": MESSAGES_PER_RUN, "documents_per_run": round(9 + 1 / batch, 3),
        "runs_per_s": round(runs / seconds, 1), "seconds": round(seconds, 2),
        "cpu_ms_per_run_by_process": {k: round(v * 1000 / runs, 1) for k, v in cpu.items()},
        "cpu_ms_per_run_servers": round(
            sum(v for k, v in cpu.items() if k != "floor client") * 1000 / runs, 1),
    }


async def _settle(producer: AIOKafkaProducer, consumer: AIOKafkaConsumer) -> None:
    """The consumer has its partitions and a position before anything is timed."""
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=200)
    await consumer.seek_to_end()
    await producer.send_and_wait(TOPIC, MESSAGE, key=b"warm")
    await _consume(consumer, 1)


async def _one_batch(dbs: list[Any], producer: AIOKafkaProducer, consumer: AIOKafkaConsumer,
                     first: int, count: int) -> None:
    ids = [f"floor-{first + i}" for i in range(count)]
    sent = [await producer.send(TOPIC, MESSAGE, key=run.encode())
            for run in ids for _ in range(MESSAGES_PER_RUN)]
    await asyncio.gather(*sent)
    await _consume(consumer, len(sent))
    keys = [f"{r}:{step}:1" for r in ids for step in ("legal", "finance")]
    await asyncio.gather(_runs(dbs[0]["runs"], ids), _items(dbs[1]["work_items"], keys),
                         _page(dbs[2]["delivery_log"], first, keys))


async def _runs(runs: Any, ids: list[str]) -> None:
    await runs.find({"_id": {"$in": ids}}).to_list(None)  # the loads of the batch
    await runs.bulk_write([InsertOne({"_id": r, "revision": 1, "status": "running"})
                           for r in ids], ordered=False)
    for revision in range(1, 5):  # the four outcomes that change a run
        await runs.bulk_write([replace_at({"_id": r, "revision": revision + 1,
                                           "status": "running"}, revision) for r in ids],
                              ordered=False)


async def _items(items: Any, keys: list[str]) -> None:
    await items.bulk_write([InsertOne({"_id": k, "run_id": k.split(":")[0], "revision": 1,
                                       "status": "open"}) for k in keys], ordered=False)
    await items.bulk_write([replace_at({"_id": k, "run_id": k.split(":")[0], "revision": 2,
                                       "status": "completed"}, 1) for k in keys],
                           ordered=False)


async def _page(pages: Any, first: int, keys: list[str]) -> None:
    mails = [f"{k}:mail" for k in keys]
    await pages.insert_one({"_id": f"page-{first}", "ids": mails, "recipients": ["alice", "bob"],
                            "deliveries": [{"id": m, "status": "sent"} for m in mails]})


async def _consume(consumer: AIOKafkaConsumer, count: int) -> None:
    got = 0
    while got < count:
        batches = await consumer.getmany(timeout_ms=1000, max_records=500)
        got += sum(len(records) for records in batches.values())
