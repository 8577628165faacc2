"""The benchmark: Baton's three-stage human-in-the-loop workload on the embedded servers.

Stage 1 a background step; stage 2 two interactive steps in parallel, each completed
through the Work Guide API by a simulated person as soon as it is assigned (the person
reacts to WorkItemAssigned on workitems.events); stage 3 a background step.

Times come from Kafka record timestamps (set by the producing client when it sends) and
the harness' own clock, on one machine.  Round trips and messages come from the
services' /metrics; CPU and memory from /proc.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import pstats
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from bench.mail_sink import MailSinkProcess
from bench.workload import DEFINITION
from pymongo import AsyncMongoClient

from contracts import encode, headers_of
from contracts.envelope import new_event
from contracts.events.commands import StartRun
from contracts.topics import TOPICS
from infra.embedded import OWN_STORES, EmbeddedServers
from infra.stack import ServiceStack
from shared import cpu_sampler
from shared.topics import TopicPolicy, ensure_topics

ADMIN_TOKEN = "bt_bench_admin"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
DIRECTORY = {"users": [{"id": "alice", "email": "alice@example.com"},
                       {"id": "bob", "email": "bob@example.com"}]}
# The topics of the types the figures use (RunStarted, RunCompleted, StepCompleted,
# StepRequested, WorkItemRequested); workitems.events, which no figure reads, only the people.
WATCHED = ("runs.events", "steps.outcomes", "steps.dispatch", "workitems.dispatch")
# The types whose payload's step the figures use (the hops out of a step); the observer
# reads every other record from its key (the run) and its type header alone.
STEPPED = frozenset({"StepCompleted", "StepRequested"})
COMPLETION = b'{"values":{"ok":true}}'


WARMUP_RUNS = 20
WRITTEN = "baton_mongodb_documents_written_total"
PUBLISHED = "baton_messages_published_total"
# BATON_BENCH_PROFILE=1: run the services under cProfile and print each one's top functions
# (their CPU figures are then inflated by the profiler: take those from a run without it);
# BATON_BENCH_PROFILE=sample: sample their stacks per millisecond of CPU instead
# (shared/cpu_sampler.py), which distorts less and keeps the stacks for flame graphs.
PROFILE_MODE = os.environ.get("BATON_BENCH_PROFILE", "")
PROFILE_DIR = PROFILE_MODE not in ("", "0")


@dataclass(frozen=True)
class Scenario:
    name: str
    runs: int
    partitions: int = 4
    replicas: int = 1  # of the coordinator and the step-runner
    rate: float | None = None  # runs/s started steadily; None: all at once


def completion_curve(completed_at: list[float], began: float) -> dict[str, float]:
    """Seconds from ``began`` until each share of the runs had completed."""
    times = sorted(at - began for at in completed_at)
    if not times:
        return {}
    return {f"{share}%": round(times[max(0, -(-len(times) * share // 100) - 1)], 2)
            for share in (50, 90, 99, 100)}


@dataclass
class Observed:
    """What the harness saw, by run."""

    started_sent: dict[str, float] = field(default_factory=dict)  # harness clock, s
    human_done: dict[str, float] = field(default_factory=dict)  # last completion returned
    events: dict[str, list[tuple[str, str, float]]] = field(
        default_factory=lambda: defaultdict(list))  # run -> (type, step, record ts in s);
    # the step only for the STEPPED types (the figures use no other's), else "".
    completed: dict[str, float] = field(default_factory=dict)
    run_started: dict[str, float] = field(default_factory=dict)
    # The Work Guide's answers to the people's completions, by status (or client error).
    answers: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    answer_ms: list[float] = field(default_factory=list)  # a completion's request, answered


def type_and_run(record: Any) -> tuple[str, str]:
    """A record's event type and run id, from its type header and its key: Baton keys
    every message of a run by the run's id (Envelope.partition_key), and puts the type in
    a header (headers_of), so most records need no JSON parsing.  A record without the
    header is parsed; a message of no run (keyed otherwise) ends up under its key, which no
    run of the bench has, so no figure sees it."""
    for name, value in record.headers:
        if name == "type":
            return value.decode(), record.key.decode() if record.key else ""
    message = json.loads(record.value)
    return message["type"], message.get("run_id") or ""


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def proc_peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def profile_tops(folder: Path, top: int = 25) -> str:
    """Each service's functions by their own CPU time (cProfile's tottime), biggest first,
    or by their share of the CPU samples."""
    out = io.StringIO()
    for path in sorted(folder.glob("*.stacks")):  # BATON_BENCH_PROFILE=sample
        out.write(f"\n==== {path.stem} (CPU samples; stacks in {path}) ====\n")
        out.write(cpu_sampler.tops(path, top))
    for path in sorted(folder.glob("*.prof")):
        out.write(f"\n==== {path.stem} ====\n")
        stats = pstats.Stats(str(path), stream=out)
        stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


async def metric_sum(client: httpx.AsyncClient, url: str, name: str) -> float:
    text = (await client.get(f"{url}/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def metric_by(client: httpx.AsyncClient, url: str, name: str, label: str
                    ) -> dict[str, float]:
    """One counter's values summed by one of its labels."""
    text = (await client.get(f"{url}/metrics")).text
    found: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels = line[len(name) + 1:line.rindex("}")]
            value = dict(part.split("=", 1) for part in labels.split(",")).get(label, '""')
            found[value.strip('"')] += float(line.rsplit(" ", 1)[1])
    return dict(found)


async def store_top(uris: Iterable[str]) -> dict[str, float]:
    """MongoDB's ``top`` of every store: the servers' time (wall, microseconds) per
    collection and operation since they started, as ``"collection:op" -> seconds`` (the
    bench database only; a collection found on two stores is summed)."""
    found: dict[str, float] = defaultdict(float)
    for uri in uris:
        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
        try:
            totals = (await mongo.admin.command("top"))["totals"]
        finally:
            await mongo.close()
        for ns, ops in totals.items():
            if not ns.startswith("baton_bench."):
                continue
            for op, spent in ops.items():
                if op not in ("total", "readLock", "writeLock") and spent.get("time"):
                    found[f"{ns.split('.', 1)[1]}:{op}"] += spent["time"] / 1e6
    return dict(found)


async def batches_of(client: httpx.AsyncClient, url: str) -> dict[str, list[float]]:
    """Per consumer (topic label): [batches handled, seconds spent, messages consumed]."""
    text = (await client.get(f"{url}/metrics")).text
    found: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for line in text.splitlines():
        for name, index in (("baton_handler_seconds_count{", 0),
                            ("baton_handler_seconds_sum{", 1)):
            if line.startswith(name):
                labels = dict(part.split("=", 1) for part in
                              line[len(name):line.rindex("}")].split(","))
                found[labels.get("topic", '""').strip('"')][index] += float(
                    line.rsplit(" ", 1)[1])
    return dict(found)


class Bench:
    def __init__(self, scenario: Scenario, workdir: Path) -> None:
        self.scenario = scenario
        self.workdir = workdir
        self.servers: EmbeddedServers | None = None
        self.stack: ServiceStack | None = None
        self.observed = Observed()
        self.tokens: dict[str, dict[str, str]] = {}
        self.written: dict[str, float] = {}
        self.harness_cpu = 0.0  # the harness' process and its mail sink's
        self.mail_sink_cpu = 0.0
        self.mails = 0
        self.batches: dict[str, dict[str, float]] = {}
        self.store_time: dict[str, float] = {}

    async def __aenter__(self) -> Bench:
        # The stores as `make run` has them: the coordinator and assignment on their own.
        self.servers = EmbeddedServers(self.workdir / "servers", own_stores=OWN_STORES).start()
        await ensure_topics(self.servers.kafka_bootstrap, TOPICS,
                            TopicPolicy(partitions=self.scenario.partitions))
        # People are told by email, as in production: a local SMTP server takes the mail,
        # in a process of its own (its CPU is counted with the harness', and shown apart).
        self.smtp = MailSinkProcess().start()
        env = {**self.servers.env(), "BATON_MONGODB_DATABASE": "baton_bench",
               "BATON_ADMIN_TOKEN": ADMIN_TOKEN, "BATON_LOG_LEVEL": "WARNING",
               "BATON_LOG_FORMAT": "json", "BATON_SMTP_HOST": "127.0.0.1",
               "BATON_SMTP_PORT": str(self.smtp.port)}
        if PROFILE_DIR:  # each service writes a cProfile when it stops (profile_tops)
            env["BATON_PROFILE_DIR"] = str(self.workdir / "profiles")
            env["BATON_PROFILE_MODE"] = "sample" if PROFILE_MODE == "sample" else "cprofile"
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.stack = ServiceStack(env=env, log_dir=self.workdir / "logs",
                                  service_env=self.servers.service_env())
        self.stack.start(timeout=120)
        for name in ("stage-coordinator", "step-runner"):
            for replica in range(1, self.scenario.replicas):
                self.stack.start_one(name, replica)
                self.stack.wait_healthy(f"{name}#{replica}", timeout=120)
        async with httpx.AsyncClient(timeout=30) as client:
            guide = self.stack.url("assignment")
            (await client.put(f"{guide}/directory", json=DIRECTORY, headers=ADMIN)
             ).raise_for_status()
            for user in ("alice", "bob"):
                issued = await client.post(f"{guide}/tokens", json={"user_id": user},
                                           headers=ADMIN)
                self.tokens[user] = {"Authorization": f"Bearer {issued.json()['token']}"}
            (await client.post(f"{self.stack.url('trigger')}/definitions", headers=ADMIN,
                               content=DEFINITION.encode())).raise_for_status()
        return self

    async def __aexit__(self, *_: Any) -> None:
        if self.stack:
            self.stack.stop()
            if PROFILE_DIR:
                print(profile_tops(self.workdir / "profiles"))
        self.smtp.stop()
        if self.servers:
            self.servers.stop()

    # -- the simulated people ------------------------------------------------------------

    async def people(self, stop: asyncio.Event) -> None:
        # aiohttp here, not at the top: the default suite collects this module and need
        # not have the bench's client installed.
        import aiohttp

        assert self.servers and self.stack
        consumer = AIOKafkaConsumer("workitems.events",
                                    bootstrap_servers=self.servers.kafka_bootstrap,
                                    group_id=f"bench-people-{uuid.uuid4().hex[:6]}",
                                    auto_offset_reset="earliest", enable_auto_commit=True)
        await consumer.start()
        guide = self.stack.url("assignment")
        headers = {user: {**token, "Content-Type": "application/json"}
                   for user, token in self.tokens.items()}
        pending: set[asyncio.Task[None]] = set()
        remaining: dict[str, int] = defaultdict(lambda: 2)
        # aiohttp rather than httpx: about a tenth of the CPU per request (README).
        connector = aiohttp.TCPConnector(limit=64, keepalive_timeout=30)
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=60)) as session:
            gate = asyncio.Semaphore(48)

            async def complete(item_id: str, user: str, run_id: str) -> None:
                async with gate:
                    # A person tries again, as long as it takes: under a 10,000-run burst a
                    # request may time out, and a person who gave up would leave a run open.
                    for attempt in range(200):
                        try:
                            asked = time.perf_counter()
                            async with session.post(f"{guide}/work/{item_id}/complete",
                                                    headers=headers[user],
                                                    data=COMPLETION) as answer:
                                await answer.read()
                            if answer.status == 200:
                                self.observed.answer_ms.append(
                                    (time.perf_counter() - asked) * 1000)
                        except (aiohttp.ClientError, TimeoutError) as exc:
                            self.observed.answers[type(exc).__name__] += 1
                            await asyncio.sleep(min(0.05 * 2 ** attempt, 2.0))
                            continue
                        self.observed.answers[str(answer.status)] += 1
                        if answer.status in (200, 409):
                            break
                        await asyncio.sleep(min(0.05 * 2 ** attempt, 2.0))
                remaining[run_id] -= 1
                if remaining[run_id] == 0:
                    self.observed.human_done[run_id] = time.time()

            try:
                while not stop.is_set():
                    batch = await consumer.getmany(timeout_ms=50, max_records=500)
                    for records in batch.values():
                        for record in records:
                            if type_and_run(record)[0] != "WorkItemAssigned":
                                continue
                            message = json.loads(record.value)
                            payload = message["payload"]
                            task = asyncio.create_task(complete(
                                payload["work_item_id"], payload["assignee"], message["run_id"]))
                            pending.add(task)
                            task.add_done_callback(pending.discard)
                if pending:
                    await asyncio.gather(*pending)
            finally:
                await consumer.stop()

    # -- the observer ----------------------------------------------------------------------

    async def observe(self, stop: asyncio.Event) -> None:
        assert self.servers
        # Times come from the records' timestamps, so the observer may read in large
        # fetches: the broker's CPU for it is counted with the stack's (as Kafka's).
        consumer = AIOKafkaConsumer(*WATCHED, bootstrap_servers=self.servers.kafka_bootstrap,
                                    group_id=None, auto_offset_reset="earliest",
                                    enable_auto_commit=False, fetch_min_bytes=256 * 1024,
                                    fetch_max_wait_ms=250)
        await consumer.start()
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=100, max_records=2000)
                for records in batch.values():
                    for record in records:
                        kind, run_id = type_and_run(record)
                        if not run_id:
                            continue
                        at = record.timestamp / 1000
                        step = (json.loads(record.value)["payload"].get("step", "")
                                if kind in STEPPED else "")
                        self.observed.events[run_id].append((kind, step, at))
                        if kind == "RunCompleted":
                            self.observed.completed[run_id] = at
                        elif kind == "RunStarted":
                            self.observed.run_started[run_id] = at
        finally:
            await consumer.stop()

    # -- the driver --------------------------------------------------------------------------

    async def start_runs(self, count: int | None = None, rate: float | None = None) -> None:
        assert self.servers
        producer = AIOKafkaProducer(bootstrap_servers=self.servers.kafka_bootstrap,
                                    linger_ms=2)
        await producer.start()
        try:
            rate = rate or self.scenario.rate
            interval = 1 / rate if rate else 0.0
            began = time.monotonic()
            futures = []
            for i in range(self.scenario.runs if count is None else count):
                if interval:
                    await asyncio.sleep(max(0.0, began + i * interval - time.monotonic()))
                run_id = uuid.uuid4().hex
                envelope = new_event(StartRun(orchestration="bench", requested_by="bench"),
                                     producer="bench", run_id=run_id)
                self.observed.started_sent[run_id] = time.time()
                futures.append(await producer.send(
                    "commands", encode(envelope), key=run_id.encode(),
                    headers=[(k, v.encode()) for k, v in headers_of(envelope).items()]))
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    async def run(self, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        assert self.stack
        procs = {key: proc.pid for key, proc in self.stack.procs.items()}
        assert self.servers
        servers = {key: proc.pid for key, proc in self.servers.procs.items()}
        stop = asyncio.Event()
        observer = asyncio.create_task(self.observe(stop))
        people = asyncio.create_task(self.people(stop))
        await self.warm_up()
        servers_before = {k: proc_cpu_seconds(pid) for k, pid in servers.items()}
        top_before = await store_top(self.servers.stores.values())
        async with httpx.AsyncClient(timeout=30) as client:
            urls = {key: self.stack.url(key) for key in procs}
            mongo_before = {k: await metric_sum(client, u, "baton_mongodb_commands_total")
                            for k, u in urls.items()}
            written_before = {k: await metric_by(client, u, WRITTEN, "collection")
                              for k, u in urls.items()}
            published_before = {k: await metric_by(client, u, PUBLISHED, "topic")
                                for k, u in urls.items()}
            transitions_before = sum([await metric_sum(client, u, "baton_run_transitions_total")
                                      for k, u in urls.items() if k.startswith("stage-")])
            cpu_before = {k: proc_cpu_seconds(pid) for k, pid in procs.items()}
            batches_before = {k: await batches_of(client, u) for k, u in urls.items()}
            harness_before = proc_cpu_seconds(os.getpid())
            sink_before = proc_cpu_seconds(self.smtp.pid)
            mails_before = self.smtp.messages
            began = time.time()
            await self.start_runs()
            deadline = time.monotonic() + timeout
            while (len(self.observed.completed) < self.scenario.runs  # noqa: ASYNC110
                   and time.monotonic() < deadline):
                await asyncio.sleep(0.2)
            ended = time.time()
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(observer, people)
            cpu_after = {k: proc_cpu_seconds(pid) for k, pid in procs.items()}
            self.mail_sink_cpu = proc_cpu_seconds(self.smtp.pid) - sink_before
            self.harness_cpu = (proc_cpu_seconds(os.getpid()) - harness_before
                                + self.mail_sink_cpu)
            self.mails = self.smtp.messages - mails_before
            batches_after = {k: await batches_of(client, u) for k, u in urls.items()}
            self.batches = {
                f"{k}:{topic}": {
                    "batches": int(n - batches_before[k].get(topic, [0, 0])[0]),
                    "mean_ms": round((t - batches_before[k].get(topic, [0, 0])[1]) * 1000
                                     / max(n - batches_before[k].get(topic, [0, 0])[0], 1), 1)}
                for k in procs for topic, (n, t, _) in batches_after[k].items()
                if n - batches_before[k].get(topic, [0, 0])[0] > 0}
            servers_cpu = {k: proc_cpu_seconds(pid) - servers_before[k]
                           for k, pid in servers.items()}
            top_after = await store_top(self.servers.stores.values())
            self.store_time = {k: v - top_before.get(k, 0.0) for k, v in top_after.items()
                               if v - top_before.get(k, 0.0) > 0}
            mongo_after = {k: await metric_sum(client, u, "baton_mongodb_commands_total")
                           for k, u in urls.items()}
            written_after = {k: await metric_by(client, u, WRITTEN, "collection")
                             for k, u in urls.items()}
            published_after = {k: await metric_by(client, u, PUBLISHED, "topic")
                               for k, u in urls.items()}
            transitions = sum([await metric_sum(client, u, "baton_run_transitions_total")
                               for k, u in urls.items() if k.startswith("stage-")]
                              ) - transitions_before
        peak = {k: proc_peak_mib(pid) for k, pid in procs.items()}
        self.written = {f"{k}:{c}": n - written_before[k].get(c, 0.0)
                        for k in procs for c, n in written_after[k].items()
                        if n - written_before[k].get(c, 0.0) > 0}
        return self.figures(began, ended, transitions,
                            {k: mongo_after[k] - mongo_before[k] for k in procs},
                            {f"{k}:{t}": n - published_before[k].get(t, 0.0)
                             for k in procs for t, n in published_after[k].items()
                             if n - published_before[k].get(t, 0.0) > 0},
                            {k: cpu_after[k] - cpu_before[k] for k in procs}, peak,
                            servers_cpu)

    async def warm_up(self, runs: int = WARMUP_RUNS, timeout: float = 120.0) -> None:  # noqa: ASYNC109
        """Runs before the measured ones (consumer groups joined, connections and caches
        warm), then forgotten: the figures are of the steady state."""
        await self.start_runs(count=runs, rate=10.0)
        deadline = time.monotonic() + timeout
        while (len(self.observed.completed) < runs  # noqa: ASYNC110
               and time.monotonic() < deadline):
            await asyncio.sleep(0.1)
        if len(self.observed.completed) < runs:
            raise RuntimeError(f"only {len(self.observed.completed)} of {runs} warm-up runs "
                               "completed")
        await asyncio.sleep(1.0)
        self.observed = Observed()

    def figures(self, began: float, ended: float, transitions: float,
                mongo: dict[str, float], published: dict[str, float],
                cpu: dict[str, float], peak: dict[str, float],
                servers_cpu: dict[str, float]) -> dict[str, Any]:
        o, n = self.observed, self.scenario.runs
        done = [r for r in o.started_sent if r in o.completed]
        last_done = max((o.completed[r] for r in done), default=ended)
        last_started = max(o.run_started.values(), default=ended)
        human_to_done = [(o.completed[r] - o.human_done[r]) * 1000
                         for r in done if r in o.human_done]
        hops = []
        for run_id in done:
            events = o.events[run_id]
            for outcome_step, next_type in (("prepare", "WorkItemRequested"),
                                            ("close", "RunCompleted")):
                outcome = [at for kind, step, at in events
                           if kind == "StepCompleted" and step == outcome_step]
                following = [at for kind, _, at in events if kind == next_type]
                if outcome and following:
                    hops.append((min(following) - outcome[0]) * 1000)
            human = [at for kind, step, at in events
                     if kind == "StepCompleted" and step in ("legal", "finance")]
            close = [at for kind, step, at in events
                     if kind == "StepRequested" and step == "close"]
            if len(human) >= 2 and close:
                hops.append((close[0] - max(human)) * 1000)
        duration = max(last_done - began, 1e-9)
        coordinator_trips = sum(v for k, v in mongo.items() if k.startswith("stage-"))
        return {
            "scenario": self.scenario.name, "runs": n, "partitions": self.scenario.partitions,
            "replicas": self.scenario.replicas, "rate": self.scenario.rate,
            "completed": len(done), "lost": n - len(done),
            "starts_per_s": round(n / max(last_started - began, 1e-9), 1),
            "completed_per_s": round(len(done) / duration, 1),
            "seconds": round(duration, 2),
            # When the first half, 90 %, 99 % and all of the runs had completed (s after the
            # first start): a long tail says the burst's end waits on something.
            "completed_by_s": completion_curve([o.completed[r] for r in done], began),
            "human_to_done_ms_p50": round(percentile(human_to_done, 50), 1),
            "human_to_done_ms_p99": round(percentile(human_to_done, 99), 1),
            "transition_ms_p50": round(percentile(hops, 50), 1),
            "transition_ms_p99": round(percentile(hops, 99), 1),
            "transitions": int(transitions),
            "transitions_per_s": round(transitions / duration, 1),
            "coordinator_round_trips_per_transition": round(
                coordinator_trips / max(transitions, 1), 2),
            "round_trips_per_run": round(sum(mongo.values()) / max(len(done), 1), 1),
            "round_trips_per_run_by_service": {
                k: round(v / max(len(done), 1), 2) for k, v in mongo.items()},
            "messages_per_transition": round(sum(published.values()) / max(transitions, 1), 2),
            "messages_per_run": round(sum(published.values()) / max(len(done), 1), 2),
            "messages_per_run_by_service_and_topic": {
                k: round(v / max(len(done), 1), 2) for k, v in sorted(published.items())},
            "cpu_ms_per_run_every_process": round(
                (sum(cpu.values()) + sum(servers_cpu.values())) * 1000 / max(len(done), 1), 1),
            "cpu_s_per_run": round(sum(cpu.values()) / max(len(done), 1), 4),
            # The harness (people, observer, producer of the starts, and the mail sink in
            # its own process) is not Baton: apart; the mail sink's share also alone.
            "harness_cpu_ms_per_run": round(self.harness_cpu * 1000 / max(len(done), 1), 1),
            "mail_sink_cpu_ms_per_run": round(
                self.mail_sink_cpu * 1000 / max(len(done), 1), 2),
            "mails_per_run": round(self.mails / max(len(done), 1), 2),
            "documents_written_per_run": round(
                sum(self.written.values()) / max(len(done), 1), 2),
            "documents_written_per_run_by_service_and_collection": {
                k: round(v / max(len(done), 1), 2) for k, v in sorted(self.written.items())},
            # Each consumer's batches: how many, and how long one took to handle on average.
            "consumer_batches": self.batches,
            "work_guide_answers": dict(sorted(o.answers.items())),
            "work_guide_completion_ms_p50": round(percentile(o.answer_ms, 50), 1),
            "work_guide_completion_ms_p99": round(percentile(o.answer_ms, 99), 1),
            "cpu_s_by_service": {k: round(v, 1) for k, v in cpu.items()},
            "peak_mib_by_service": {k: round(v) for k, v in peak.items()},
            "cpu_s_by_server": {k: round(v, 1) for k, v in servers_cpu.items()},
            # Where the store's time went (MongoDB's ``top``: wall time under the lock,
            # by collection and operation), ms per completed run.
            "store_ms_per_run_by_collection_and_op": {
                k: round(v * 1000 / max(len(done), 1), 2)
                for k, v in sorted(self.store_time.items(), key=lambda kv: -kv[1])},
            "mean_human_to_done_ms": round(statistics.fmean(human_to_done), 1)
            if human_to_done else None,
        }


async def floor(workdir: Path, iterations: int = 500) -> dict[str, Any]:
    """The least one transition needs, in a tight loop with the same clients: one Kafka
    produce and consume, one conditional MongoDB update."""
    servers = EmbeddedServers(workdir / "floor").start()
    try:
        await ensure_topics(servers.kafka_bootstrap, TOPICS, TopicPolicy(partitions=1))
        producer = AIOKafkaProducer(bootstrap_servers=servers.kafka_bootstrap,
                                    linger_ms=0)
        consumer = AIOKafkaConsumer("commands", bootstrap_servers=servers.kafka_bootstrap,
                                    group_id=None, auto_offset_reset="latest")
        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(servers.mongodb_uri)
        runs = mongo["floor"]["runs"]
        await producer.start()
        await consumer.start()
        try:
            await runs.insert_one({"_id": "r", "revision": 0})
            await consumer.seek_to_end()
            began = time.perf_counter()
            for i in range(iterations):
                await producer.send_and_wait("commands", b"{}", key=b"r")
                await consumer.getone()
                result = await runs.update_one({"_id": "r", "revision": i},
                                               {"$set": {"revision": i + 1}})
                assert result.modified_count == 1
            seconds = time.perf_counter() - began
        finally:
            await producer.stop()
            await consumer.stop()
            await mongo.close()
        return {"iterations": iterations, "per_s": round(iterations / seconds, 1),
                "ms_each": round(seconds / iterations * 1000, 2)}
    finally:
        servers.stop()


TABLE_ROWS: list[tuple[str, str | Callable[[dict[str, Any]], Any]]] = [
    ("run starts/s", "starts_per_s"),
    ("completed runs/s", "completed_per_s"),
    ("completed / lost", lambda r: f"{r['completed']} / {r['lost']}"),
    ("last human -> done p50/p99 ms",
     lambda r: f"{r['human_to_done_ms_p50']:.0f} / {r['human_to_done_ms_p99']:.0f}"),
    ("transition p50/p99 ms",
     lambda r: f"{r['transition_ms_p50']:.0f} / {r['transition_ms_p99']:.0f}"),
    ("Work Guide completion p50/p99 ms",
     lambda r: f"{r.get('work_guide_completion_ms_p50', 0):.0f} / "
               f"{r.get('work_guide_completion_ms_p99', 0):.0f}"),
    ("transitions/s", "transitions_per_s"),
    ("MongoDB round trips/transition (coordinator)", "coordinator_round_trips_per_transition"),
    ("MongoDB round trips/run (all)", "round_trips_per_run"),
    ("Kafka messages/transition", "messages_per_transition"),
    ("Kafka messages/run", "messages_per_run"),
    ("MongoDB documents written/run", "documents_written_per_run"),
    ("CPU s/run (services)", "cpu_s_per_run"),
    ("CPU ms/run (every process)", "cpu_ms_per_run_every_process"),
    ("harness CPU ms/run (apart, with mail sink)", "harness_cpu_ms_per_run"),
    ("  of which the mail sink", lambda r: r.get("mail_sink_cpu_ms_per_run", "?")),
    ("mails/run", lambda r: r.get("mails_per_run", "?")),
    ("peak MiB (largest service)", lambda r: max(r["peak_mib_by_service"].values())),
]


def table(results: list[dict[str, Any]]) -> str:
    """The compact table `make bench` prints: one column per scenario, the floor first."""
    floors = [r for r in results if r["scenario"] == "floor"]
    run_floors = [r for r in results if r["scenario"] == "run-floor"]
    runs = [r for r in results if r["scenario"] not in ("floor", "run-floor") and "runs" in r]
    lines = [f"{r['scenario']}: {json.dumps({k: v for k, v in r.items() if k != 'scenario'})}"
             for r in results if (r["scenario"] != "floor" and "runs" not in r) or
             r["scenario"] == "run-floor"]
    if floors:
        f = floors[-1]
        lines.append(f"floor: {f['per_s']} transitions/s ({f.get('ms_each', '?')} ms each)")
    if runs:
        names = [r["scenario"] for r in runs]
        width = max(len(n) for n in names) + 2
        lines.append(f"{'':<46}" + "".join(f"{n:>{width}}" for n in names))
        for label, key in TABLE_ROWS:
            cells = [key(r) if callable(key) else r.get(key) for r in runs]
            lines.append(f"{label:<46}" + "".join(f"{c!s:>{width}}" for c in cells))
        if floors:
            ratios = [f"{r['transitions_per_s'] / floors[-1]['per_s']:.0%}" for r in runs]
            lines.append(f"{'transitions/s as a share of the floor':<46}"
                         + "".join(f"{c:>{width}}" for c in ratios))
        if run_floors:
            ratios = [share_of_floors(r, bracketing_floors(results, r)) for r in runs]
            lines.append(f"{'completed runs/s as a share of the run floor':<46}"
                         + "".join(f"{c:>{width}}" for c in ratios))
            lines += median_shares(results, runs)
    return "\n".join(lines)


def median_shares(results: list[dict[str, Any]], runs: list[dict[str, Any]]) -> list[str]:
    """For a burst measured more than once (BATON_BENCH_ROUNDS): the median of its shares
    of the run floors beside it, and each round's."""
    lines = []
    for name in dict.fromkeys(r["scenario"] for r in runs):
        shares = [r["completed_per_s"] / statistics.fmean(floors) for r in runs
                  if r["scenario"] == name and (floors := bracketing_floors(results, r))]
        if len(shares) > 1:
            lines.append(f"{name}: median share of the run floor {statistics.median(shares):.0%}"
                         f" over {len(shares)} rounds ("
                         + ", ".join(f"{s:.0%}" for s in shares) + ")")
    return lines


def bracketing_floors(results: list[dict[str, Any]], run: dict[str, Any]) -> list[float]:
    """The run floors (runs/s) measured next to ``run``: the last one before it and the
    first one after it, when there are.

    The machine's speed moves by a third within minutes, and a floor taken minutes before a
    burst can be from another stretch: the bench measures the floor again after each burst
    (test_bench.py), and a burst is compared with the mean of the floors on either side.
    """
    at = next(i for i, r in enumerate(results) if r is run)
    before = [r["runs_per_s"] for r in results[:at] if r["scenario"] == "run-floor"][-1:]
    after = [r["runs_per_s"] for r in results[at + 1:] if r["scenario"] == "run-floor"][:1]
    return before + after


def share_of_floors(run: dict[str, Any], floors: list[float]) -> str:
    return f"{run['completed_per_s'] / statistics.fmean(floors):.0%}" if floors else "?"
