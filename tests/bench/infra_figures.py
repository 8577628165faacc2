"""make bench: what the stack costs before any run, and what one Kafka hop takes.

- broker-start: the embedded broker's start-up time (first start, which formats the storage,
  and a restart on its data) and its resident memory;
- idle: the whole stack (broker, MongoDB, five services) started, nothing to do: CPU per
  process from /proc over a window, after a settling period;
- hop: produce -> consume latency with Baton's client settings (acks=all and idempotence;
  the consumer's fetch and batch waits), one message at a time on an idle broker, both ends
  timed by the harness' one clock.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from bench_harness import percentile, proc_cpu_seconds

from contracts.topics import Topic
from infra.embedded import OWN_STORES, EmbeddedServers
from infra.kafka_broker import EmbeddedKafka, kafka_version
from infra.stack import ServiceStack
from shared.settings import ServiceSettings
from shared.topics import ensure_topics


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def broker_start(workdir: Path) -> dict[str, Any]:
    broker = EmbeddedKafka(workdir / "broker")
    began = time.monotonic()
    broker.start()
    first = time.monotonic() - began
    assert broker.proc is not None
    time.sleep(5)
    rss = resident_mib(broker.proc.pid)
    ports = broker.port, broker.controller_port
    broker.stop()
    broker = EmbeddedKafka(workdir / "broker", *ports)
    began = time.monotonic()
    broker.start()
    again = time.monotonic() - began
    broker.stop()
    return {"scenario": "broker-start", "kafka": kafka_version(), "heap_mb": broker.heap_mb,
            "first_start_s": round(first, 2), "restart_s": round(again, 2),
            "resident_mib": round(rss)}


def idle(workdir: Path, settle: float = 30.0, window: float = 60.0) -> dict[str, Any]:
    servers = EmbeddedServers(workdir / "servers", own_stores=OWN_STORES).start()
    stack = ServiceStack(env={**servers.env(), "BATON_MONGODB_DATABASE": "baton_idle",
                              "BATON_LOG_LEVEL": "WARNING"}, log_dir=workdir / "logs",
                         service_env=servers.service_env())
    try:
        stack.start(timeout=120)
        time.sleep(settle)
        pids = {**{f"server:{n}": p.pid for n, p in servers.procs.items()},
                **{n: p.pid for n, p in stack.procs.items()}}
        before = {n: proc_cpu_seconds(p) for n, p in pids.items()}
        time.sleep(window)
        used = {n: proc_cpu_seconds(p) - before[n] for n, p in pids.items()}
    finally:
        stack.stop()
        servers.stop()
    cores = {n: round(v / window, 4) for n, v in used.items()}
    services = sum(v for n, v in cores.items() if not n.startswith("server:"))
    return {"scenario": "idle", "window_s": window, "cores_by_process": cores,
            "cores_broker_and_services": round(services + cores["server:kafka"], 4),
            "cores_total": round(sum(cores.values()), 4)}


async def hop(workdir: Path, messages: int = 300) -> dict[str, Any]:
    servers = EmbeddedServers(workdir / "hop").start()
    settings = ServiceSettings()
    topic = "bench.hop"
    try:
        await ensure_topics(servers.kafka_bootstrap, [Topic(topic, 1, "hop latency", (), ())])
        producer = AIOKafkaProducer(bootstrap_servers=servers.kafka_bootstrap, acks="all",
                                    enable_idempotence=True, linger_ms=1)
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=servers.kafka_bootstrap,
                                    group_id="bench-hop", auto_offset_reset="earliest",
                                    fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms)
        await producer.start()
        await consumer.start()
        latencies: list[float] = []
        try:
            await producer.send_and_wait(topic, b"warm-up")
            await consumer.getmany(timeout_ms=5000)
            for index in range(messages):
                await asyncio.sleep(0.05)  # idle between messages, as a quiet stack is
                sent = time.perf_counter()
                await producer.send(topic, str(index).encode())
                got: dict[Any, Any] = {}
                while not got:
                    got = await consumer.getmany(
                        timeout_ms=settings.consumer_batch_timeout_ms,
                        max_records=settings.consumer_max_records)
                latencies.append((time.perf_counter() - sent) * 1000)
        finally:
            await consumer.stop()
            await producer.stop()
    finally:
        servers.stop()
    return {"scenario": "hop", "messages": messages,
            "produce_to_consume_ms_p50": round(percentile(latencies, 50), 2),
            "produce_to_consume_ms_p99": round(percentile(latencies, 99), 2)}
