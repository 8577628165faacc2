"""The composition root every service process uses: settings, clients, HTTP, lifecycle.

A service builds one :class:`Runtime`, registers its consumers, periodic jobs, HTTP
routes and indexes, then calls :meth:`Runtime.serve`.  /health and /metrics come free.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
)
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pymongo
import uvicorn
from fastapi import FastAPI, Response
from fastapi.middleware import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from contracts import Envelope
from contracts.topics import TOPICS
from shared.broker_watch import BrokerWatch
from shared.cpu_sampler import sampled
from shared.due import Alarm, DueJob, DueLoop
from shared.http_guard import RequestGuard
from shared.logs import configure_logging
from shared.messaging import BatchConsumer, BatchHandler, Intake, Publisher, make_broker
from shared.metrics import ServiceMetrics
from shared.mongo import CommandCounter, Index, ensure_indexes, make_client
from shared.problems import install as answer_problems
from shared.projection import Apply, TopicProjection, kafka_consumer
from shared.settings import ServiceSettings
from shared.stopping import Job, repeat, stop_step

log = logging.getLogger("baton.runtime")
REPLAY_AGAIN_AFTER = (0.0, 3.0, 10.0)  # seconds between the seeks of a replay
CLOSE_SECONDS = 1.0  # how long closing the MongoDB client may wait for the server
GRACE_SECONDS = 3  # how long a stop waits for the requests in progress


# Allocations between young collections (CPython's default is 700), and young collections
# between older ones (10 and 10): decision 30.
COLLECTOR_THRESHOLDS = (10_000, 20, 20)


def settle_the_collector() -> None:
    """Leave what start-up made out of the garbage collector's sight, and collect less often.

    Modules, FastAPI's routes, pydantic's validators and the definitions live as long as the
    process (about 100,000 objects), and every full collection walked them all again: about
    0.1 s each, a third of the coordinator's CPU per run in a burst went to the collector.
    Frozen, they are never walked again; with a larger young generation a burst's short-lived
    objects (messages, decisions, documents) are mostly freed by reference counting before a
    collection looks at them.  Cycles are still collected, only in larger batches.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)


class Runtime:
    def __init__(self, settings: ServiceSettings, *, title: str, default_port: int) -> None:
        self.settings = settings
        self.name = settings.service_name
        self.port = settings.http_port or default_port
        self.registry = CollectorRegistry()
        self.metrics = ServiceMetrics(self.registry, self.name)
        self.broker = make_broker(settings)
        self.publisher = Publisher(self.broker, self.metrics)
        commands = self.metrics.mongo_commands
        documents = self.metrics.mongo_documents
        counter = CommandCounter(
            lambda name: commands.labels(self.name, name).inc(),
            lambda collection, n: documents.labels(self.name, collection).inc(n),
        )
        self.mongo = make_client(settings.mongodb_uri, app_name=self.name, listeners=[counter])
        self.db = self.mongo[settings.mongodb_database]
        self.indexes: list[Index] = []
        self.jobs: list[tuple[float, Job, str]] = []
        self.consumers: list[BatchConsumer] = []
        self.on_start: list[Job] = []
        # Run once the broker is started, before the service is ready: owners publish their
        # state, projections read their topics to the end.
        self.on_ready: list[Job] = []
        self.on_stop: list[Job] = []
        shared_uri = settings.mongodb_shared_uri or settings.mongodb_uri
        self.shared_mongo = (self.mongo if shared_uri == settings.mongodb_uri
                             else make_client(shared_uri, app_name=self.name))
        self.broker_watch = BrokerWatch(settings, self.db, self.metrics,
                                        shared=self.shared_mongo[settings.mongodb_database])
        # What to re-send when the broker lost its data (see shared/broker_watch.py).
        self.on_broker_reset = self.broker_watch.hooks
        # Before the services re-send: the consumers read again what may not have landed.
        self.broker_watch.rewind = self._rewind_consumers
        self.broker_watch.replay_since = self._replay_since
        self.every(settings.broker_watch_seconds, self.broker_watch, "broker watch")
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = False
        # Whether the last shutdown ran every step without an error (the exit code says it).
        self.stopped = True
        self.http = FastAPI(title=title, lifespan=self._lifespan, version="1")
        self.http.add_middleware(RequestGuard)  # bounded bodies; JSON the services can keep
        answer_problems(self.http)  # every error as RFC 9457 problem details
        self.http.add_api_route("/health", self._health, methods=["GET"], tags=["operations"])
        self.http.add_api_route("/metrics", self._metrics, methods=["GET"], tags=["operations"])

    def add_guarded_middleware(self, middleware: Any, **options: Any) -> None:
        """An ASGI middleware run inside the request guard, so it sees only bodies the guard
        has bounded and checked (Starlette's add_middleware would put it outside)."""
        if self.http.middleware_stack is not None:
            raise RuntimeError("the HTTP app has started: no more middleware")
        self.http.user_middleware.append(Middleware(middleware, **options))

    def consume(
        self,
        topics: str | tuple[str, ...],
        handler: BatchHandler,
        *,
        group_id: str | None = None,
        accepts: Callable[[Envelope], bool] | None = None,
        types: Collection[str] | None = None,
        intakes: Mapping[str, Intake] | None = None,
        takes_over: Mapping[str, str] | None = None,
        co_partitioned: bool = False,
    ) -> BatchConsumer:
        """A consumer of ``topics`` in one group; ``accepts`` and ``types`` apply to every
        topic ``intakes`` does not name; ``takes_over`` names the group that read a topic
        before this one (shared/handover.py); ``co_partitioned`` gives partition p of
        every topic to one replica."""
        return self.add_consumer(BatchConsumer(**self.consumer_arguments(
            topics, handler, group_id=group_id, accepts=accepts, types=types,
            intakes=intakes, takes_over=takes_over), co_partitioned=co_partitioned))

    def consumer_arguments(
        self,
        topics: str | tuple[str, ...],
        handler: BatchHandler,
        *,
        group_id: str | None = None,
        accepts: Callable[[Envelope], bool] | None = None,
        types: Collection[str] | None = None,
        intakes: Mapping[str, Intake] | None = None,
        takes_over: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """What a consumer of this service is built with (for a BatchConsumer subclass)."""
        return {"topics": (topics,) if isinstance(topics, str) else topics,
                "group_id": group_id or self.name, "handler": handler,
                "publisher": self.publisher, "metrics": self.metrics,
                "settings": self.settings, "accepts": accepts, "types": types,
                "intakes": intakes, "takes_over": takes_over}

    def follow(self, topic: str, apply: Apply) -> TopicProjection:
        """Keep ``topic`` in memory (shared/projection.py), read to its end before ready.

        What cannot be parsed or applied is dead-lettered, as any consumer's would be.
        """
        letters = BatchConsumer(**self.consumer_arguments(
            topic, _handles_nothing, group_id=f"{self.name}-projection"))
        declared = next(t for t in TOPICS if t.name == topic)
        projection = TopicProjection(topic, apply, kafka_consumer(self.settings),
                                     partitions=declared.partitions,
                                     dead_letter=letters.dead_letter)
        self.on_ready.append(projection.start)
        self.on_stop.append(projection.stop)
        self.on_broker_reset.append(projection.rewind)
        return projection

    def add_consumer(self, consumer: BatchConsumer) -> BatchConsumer:
        consumer.register(self.broker)
        if not self.consumers:
            self.every(self.settings.consumer_lag_seconds, self.report_lag, "consumer lag")
        self.consumers.append(consumer)
        return consumer

    def every(self, seconds: float, job: Job, name: str) -> None:
        self.jobs.append((seconds, job, name))

    def when_due(self, job: DueJob, alarm: Alarm, name: str) -> DueLoop:
        """Run ``job`` when its work is due (shared/due.py); after an error, a second later."""
        loop = DueLoop(job, alarm, timedelta(seconds=self.settings.due_max_sleep_seconds))
        self.every(1.0, loop, name)
        return loop

    async def report_lag(self) -> None:
        """baton_consumer_lag per topic: what this replica's partitions are behind by."""
        totals: dict[str, int] = {}
        for consumer in self.consumers:
            for topic, lag in (await consumer.lag()).items():
                totals[topic] = totals.get(topic, 0) + lag
        for topic, lag in totals.items():
            self.metrics.consumer_lag.labels(self.name, topic).set(lag)

    async def _rewind_consumers(self) -> None:
        """After the broker lost its data, read every topic from its new beginning.

        A consumer's position on the lost log, and the offsets it committed to the new
        broker before the loss was noticed, point into a log that no longer exists.  Kafka
        reports such a position as out of range only while the new log is shorter; once
        re-sent messages have filled it past that offset, the consumer would silently skip
        everything below.  So, for a while (the group may be rejoining),
        each new assignment is committed at its beginning and sought there.  Reading from
        the start again is safe (consumers drop repeats by id) and the new log is short.
        """
        for consumer in self.consumers:
            task = asyncio.create_task(self._rewind(consumer))
            self._tasks.append(task)

    async def _replay_since(self, since: float) -> None:
        """After MongoDB restarted: every consumer reads again its messages since ``since``.

        A server killed outright may have lost the last writes it acknowledged; the
        messages that made them were consumed and committed.  Read again, each is dropped
        as a repeat where its write landed, and applied again where it was lost.
        """
        since_ms = int(since * 1000)
        for consumer in self.consumers:
            task = asyncio.create_task(self._replay(consumer, since_ms))
            self._tasks.append(task)

    async def _replay(self, consumer: BatchConsumer, since_ms: int) -> None:
        """Seek back now and twice more: a batch that was in flight when the server went
        away is sought back to its own start when it fails, which may be later than
        ``since_ms``; reading the stretch again is only repeats."""
        for delay in REPLAY_AGAIN_AFTER:
            await asyncio.sleep(delay)
            await self._rewind(consumer, window=2.0, since_ms=since_ms)

    async def _rewind(self, consumer: BatchConsumer, window: float = 60.0,
                      since_ms: int | None = None) -> None:
        """Commit and seek each assigned partition to its beginning, or to the first
        message since ``since_ms``; again on each new assignment, for ``window`` seconds."""
        client = consumer.client
        if client is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + window
        done: frozenset[Any] = frozenset()
        while loop.time() < deadline:
            assigned = frozenset(client.assignment())
            if assigned and assigned != done:
                try:
                    starts = await _starts(client, assigned, since_ms)
                    await client.commit(dict(starts.items()))
                    for tp, offset in starts.items():
                        client.seek(tp, offset)
                    consumer.sought(dict(starts.items()))
                    done = assigned
                    log.warning("rewound %s to %s", consumer.topic,
                                "the beginning of the new log" if since_ms is None
                                else "its messages since before MongoDB restarted")
                except Exception as exc:  # the group may be rebalancing: try again
                    log.info("rewinding %s: %r; trying again", consumer.topic, exc)
            await asyncio.sleep(0.5)

    def add_indexes(self, indexes: Iterable[Index]) -> None:
        self.indexes.extend(indexes)

    @asynccontextmanager
    async def _lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        await self.broker_watch.ensure_topics()
        await ensure_indexes(self.db, self.indexes)
        for hook in self.on_start:
            await hook()
        await self.broker.start()
        for hook in self.on_ready:
            await hook()
        settle_the_collector()
        self._tasks = [
            asyncio.create_task(repeat(seconds, job, name)) for seconds, job, name in self.jobs
        ]
        self.ready = True
        self.stopped = False
        log.info("%s ready on port %d", self.name, self.port)
        try:
            yield
        finally:
            await self._stop()

    async def _stop(self) -> None:
        """Stop the periodic jobs, the projections, the Kafka clients (the consumers commit
        what they handled), then the MongoDB client; each step runs whatever the one before
        it raised, so one failure does not leave the rest running."""
        self.ready = False
        for consumer in self.consumers:
            consumer.hurry()  # what they handled is committed before their clients stop
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        done = [await stop_step(hook, "a stop hook") for hook in self.on_stop]
        done.append(await stop_step(self.broker.stop, "the Kafka clients"))
        done.append(await stop_step(self._close_mongo, "the MongoDB client"))
        self.stopped = all(done)
        log.info("%s stopped%s", self.name, "" if self.stopped else " (not cleanly: see above)")

    async def _close_mongo(self) -> None:
        """Close the client, waiting at most ``CLOSE_SECONDS`` for MongoDB.

        Closing ends the client's server sessions with one command, for which the client
        waits up to its server selection timeout (10 s) when the server is gone, as when the
        servers are stopped with the services; the server forgets them by itself anyway.
        """
        with pymongo.timeout(CLOSE_SECONDS):
            await self.mongo.close()
            if self.shared_mongo is not self.mongo:
                await self.shared_mongo.close()

    async def _health(self, response: Response) -> dict[str, Any]:
        checks: dict[str, str] = {"consumers": "up" if self.ready else "starting"}
        try:
            await self.db.command("ping")
            checks["mongodb"] = "up"
        except Exception as exc:
            checks["mongodb"] = f"down: {exc.__class__.__name__}"
        healthy = all(v == "up" for v in checks.values())
        response.status_code = 200 if healthy else 503
        return {"service": self.name, "status": "up" if healthy else "down", "checks": checks}

    async def _metrics(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    def serve(self) -> None:
        """Serve until SIGTERM or SIGINT, then stop (:meth:`_stop`) and exit.

        uvicorn re-raises the signal it stopped on once it has shut down; the handler set
        here turns it into the exit code: 0 when every step of the shutdown ran, 1 when one
        failed. Without it the process would end as killed by that signal, whether or not
        its shutdown ran, and SIGINT would print a traceback.
        """
        configure_logging(self.name, self.settings.log_level, self.settings.log_format)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._exit)
        config = uvicorn.Config(
            self.http,
            host=self.settings.http_host,
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            loop=self.settings.event_loop,
            http=self.settings.http_parser,
            # A request still running at a stop (one waiting for a server that is gone)
            # is cancelled after this long instead of holding the shutdown.
            timeout_graceful_shutdown=GRACE_SECONDS,
        )
        if self.settings.profile_dir is None:
            uvicorn.Server(config).run()
            return
        target = self.settings.profile_dir / f"{self.name}-{os.getpid()}"
        if self.settings.profile_mode == "sample":
            with sampled(target.with_suffix(".stacks")):
                uvicorn.Server(config).run()
            return
        with profiled(target.with_suffix(".prof")):
            uvicorn.Server(config).run()

    def _exit(self, *_: object) -> None:
        sys.exit(0 if self.stopped else 1)


async def _handles_nothing(envelopes: list[Envelope]) -> None:
    """The handler of a consumer that is only used to dead-letter (a projection's)."""


@contextlib.contextmanager
def profiled(path: Path) -> Iterator[None]:
    """Run the body under cProfile (timing CPU) and write its statistics to ``path`` at the end.

    The statistics are written because the signal a stop ends on exits through Python
    (:meth:`Runtime.serve` sets its handler) instead of ending the process at once.
    """
    profile = cProfile.Profile(time.process_time)  # CPU, not waits or being descheduled
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        path.parent.mkdir(parents=True, exist_ok=True)
        profile.dump_stats(path)


async def _starts(client: Any, assigned: frozenset[Any], since_ms: int | None) -> dict[Any, int]:
    """Where to read each partition from again: its beginning, or its first message since
    ``since_ms`` (the end, when it has none since)."""
    if since_ms is None:
        return dict(await client.beginning_offsets(list(assigned)))
    found = await client.offsets_for_times({tp: since_ms for tp in assigned})
    ends = await client.end_offsets(list(assigned))
    return {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in assigned}
