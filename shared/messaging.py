"""Kafka plumbing: the broker factory, a publisher of envelopes, and batch consumption.

Consumption contract (every service): a batch is parsed at the edge; what cannot be
parsed goes to the dead-letter topic with the reason; the rest is handed to the
service's handler, which stores its decisions before it returns.  Offsets are
committed only after the handler returned, in the background: the next batch does not
wait for the commit, and one commit covers every batch handled while the last was in
flight (a stop before it lands means those messages are read again, and dropped by id).
An infrastructure failure (MongoDB or Kafka unreachable) rewinds the batch to be
consumed again; any other failure is retried, then the batch is split and each message
that still fails is dead-lettered so that one poison message never blocks a partition.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner, murmur2
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pymongo.errors import ConnectionFailure, OperationFailure

from contracts import ContractError, Envelope, encode, headers_of, new_event, parse
from contracts.events.dlq import DeadLettered
from contracts.topics import DLQ
from shared.handover import OffsetHandover, admin_offsets
from shared.kafka_connection import client_id, client_options, security
from shared.logs import message_context
from shared.metrics import ServiceMetrics
from shared.outgoing import Outgoing, outgoing_all
from shared.settings import ServiceSettings

log = logging.getLogger("baton.messaging")

BatchHandler = Callable[[list[Envelope]], Awaitable[None]]
DEAD_LETTER_KINDS = ("unparseable", "not handled", "handler failed")
# The most a batch of one partition holds in a produce request (aiokafka's default: 16 kB,
# about 15 of Baton's messages). A burst's outbox to one partition fills that many times
# over; each full batch makes the next send wait for it to drain, and each is a record
# batch the broker appends and every consumer walks. A quarter of a megabyte: a burst
# goes out in a few requests (docs/benchmarks.md, the spine's twelfth part). A message
# larger than this still goes, alone in its batch, up to MAX_MESSAGE_BYTES.
PRODUCER_BATCH_BYTES = 256 * 1024
# A dead letter must itself fit in a Kafka message (1 MB): the original is kept up to this.
KEPT_BYTES = 256 * 1024
KEPT_KEY = 1024
KEPT_HEADERS = 50
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionFailure,
    KafkaError,
    ConnectionError,
    TimeoutError,
)


@lru_cache(maxsize=1 << 14)
def _key_hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


def partition_of(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """The partition the Java client (and aiokafka's default) gives a key, remembered per key.

    A run's messages share its key: the coordinator sends up to eight a run, and aiokafka's
    murmur2 is pure Python (about 7 µs a key).  A message with no key goes where the
    default partitioner sends it.
    """
    if key is None:
        return int(DefaultPartitioner()(key, all_partitions, available))
    return all_partitions[_key_hash(key) % len(all_partitions)]


def make_broker(settings: ServiceSettings) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap,
        client_id=client_id(settings),
        security=security(settings),
        # A retried send is written once per partition (and in order): with acks from
        # every in-sync replica, a published outbox message is neither lost nor doubled.
        enable_idempotence=True,
        acks="all",
        partitioner=partition_of,
        # No wait to gather a batch: a message goes out at once, and what is sent while a
        # request is in flight rides the next one (a burst still batches; a steady trickle
        # saves the 1 ms a linger cost each hop, 3 hops from a person's answer to the run's end).
        linger_ms=0,
        max_batch_size=PRODUCER_BATCH_BYTES,
        request_timeout_ms=30_000,
        # A consumer whose group formed while its topic was missing (a broker that came back
        # empty, before the topics were created again) has no partitions until its next
        # metadata refresh sees them: 30 s, not the client's default 5 minutes.
        metadata_max_age_ms=30_000,
        logger=logging.getLogger(f"baton.{settings.service_name}.broker"),
    )


class Publisher:
    """Publishes envelopes keyed by run (or record) with type and version headers, or
    messages encoded already (:mod:`shared.outgoing`).

    Each message goes straight to the aiokafka producer FastStream's broker connected
    (decision 28): FastStream's publish pipeline (its middlewares, a correlation id and
    content-type header of its own, the command object) cost more than the send itself,
    about 0.03 ms of CPU a message, and a run's 16 messages each paid it.  Before the
    broker is connected, or should FastStream keep its producer elsewhere, messages take
    FastStream's path.
    """

    def __init__(self, broker: KafkaBroker, metrics: ServiceMetrics) -> None:
        self.broker = broker
        self.metrics = metrics

    async def publish(self, envelopes: Iterable[Envelope]) -> None:
        await self.send(outgoing_all(envelopes))

    async def send(self, messages: Iterable[Outgoing]) -> None:
        """Send messages encoded already (an outbox as stored, decision 35): as they are."""
        producer = kafka_producer(self.broker)
        futures = []
        for message in messages:
            if producer is not None:
                futures.append(await producer.send(message.topic, message.value,
                                                   key=message.key, headers=list(message.headers)))
            else:
                futures.append(await self.broker.publish(
                    message.value, topic=message.topic, key=message.key,
                    headers={name: text.decode() for name, text in message.headers},
                    no_confirm=True))
            self.metrics.sent(message.topic)
        if futures:
            await asyncio.gather(*futures)


def kafka_producer(broker: KafkaBroker) -> AIOKafkaProducer | None:
    """The started aiokafka producer under FastStream's broker, or None (not connected)."""
    state = getattr(broker.config.producer, "_producer", None)
    if not state:  # FastStream's placeholder before it connects (and after it stops)
        return None
    producer = getattr(state, "producer", None)
    return producer if isinstance(producer, AIOKafkaProducer) else None


@dataclass(frozen=True)
class Intake:
    """What a consumer takes from one of its topics.

    - ``types``: only these message types are parsed and handled; others are passed over
      by their ``type`` header, unparsed (their own consumer checks them and dead-letters
      what is malformed).  A record without the header is parsed, so nothing escapes the
      checks.  None: every type.
    - ``accepts``: of the parsed messages, those the handler takes; the others are
      dead-lettered as not handled on this topic.  None: every one.
    - ``adapt``: what a parsed, accepted message becomes for the handler (None: nothing,
      it is passed over).  It lets one handler read several topics and still know where
      a message came from: the handler only sees envelopes.
    - ``passes_over``: asked of each record of a wanted type before it is parsed (by its
      key and headers): True passes it over, unparsed, as one the handler would decide
      changes nothing (decision 40); counted in ``baton_messages_passed_over_total``.
      None: every record is parsed.
    """

    types: frozenset[str] | None = None
    accepts: Callable[[Envelope], bool] | None = None
    adapt: Callable[[Envelope], Envelope | None] | None = None
    passes_over: Callable[[ConsumerRecord[Any, Any]], bool] | None = None


class Watermarks:
    """Per partition: the offsets handed over and not finished yet, and what is safe to
    commit (the first unfinished offset, or the end of what was handed over)."""

    def __init__(self) -> None:
        self.pending: dict[TopicPartition, set[int]] = {}
        self.ends: dict[TopicPartition, int] = {}

    def started(self, tp: TopicPartition, offset: int) -> None:
        self.pending.setdefault(tp, set()).add(offset)
        self.ends[tp] = max(self.ends.get(tp, 0), offset + 1)

    def finished(self, tp: TopicPartition, offset: int) -> None:
        self.pending.get(tp, set()).discard(offset)

    def done(self, records: Iterable[ConsumerRecord[Any, Any]]) -> None:
        """A batch handled as a whole: each partition's position is past its records (a
        consumer that was sought back, to read again, commits from where it reads)."""
        ends: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            ends[tp] = max(ends.get(tp, 0), record.offset + 1)
        self.ends.update(ends)

    def safe(self) -> dict[TopicPartition, int]:
        """The offset each partition may commit: its first unfinished one, or its end."""
        return {tp: min(self.pending[tp]) if self.pending.get(tp) else end
                for tp, end in self.ends.items()}

    def keep_only(self, assigned: set[TopicPartition]) -> None:
        """Forget partitions this consumer no longer owns (their next owner reads again)."""
        for tp in [tp for tp in self.ends if tp not in assigned]:
            del self.ends[tp]
            self.pending.pop(tp, None)


class BatchConsumer:
    """Parses, hands over, retries, isolates poison messages and dead-letters them."""

    # Offsets are committed here, in the background, once the handler returned.
    ack_policy = AckPolicy.MANUAL

    def __init__(
        self,
        *,
        topics: Sequence[str],
        group_id: str,
        handler: BatchHandler,
        publisher: Publisher,
        metrics: ServiceMetrics,
        settings: ServiceSettings,
        accepts: Callable[[Envelope], bool] | None = None,
        types: Collection[str] | None = None,
        intakes: Mapping[str, Intake] | None = None,
        takes_over: Mapping[str, str] | None = None,
        co_partitioned: bool = False,
    ) -> None:
        self.topics = tuple(topics)
        # ``types`` and ``accepts`` for every topic that ``intakes`` does not name.
        every = Intake(frozenset(types) if types is not None else None, accepts)
        self.intakes = {topic: (intakes or {}).get(topic, every) for topic in self.topics}
        self.default_intake = every
        # topic -> the group that read it before this one (shared/handover.py)
        self.takes_over = dict(takes_over or {})
        # Partition p of every topic to the same replica (the range assignor), when its
        # topics are keyed alike: one replica holds all of a key's messages.  Round robin
        # stays second: a group of older members agrees on it until they are gone.
        self.assignors: tuple[type[AbstractPartitionAssignor], ...] = (
            (RangePartitionAssignor, RoundRobinPartitionAssignor) if co_partitioned
            else (RoundRobinPartitionAssignor,))
        self.topic = "+".join(self.topics)
        self.group_id = group_id
        self.handler = handler
        self.publisher = publisher
        self.metrics = metrics
        self.settings = settings
        self.subscriber: Any = None
        self.handover: OffsetHandover | None = None
        self.watermarks = Watermarks()
        self.committed: dict[TopicPartition, int] = {}
        self._dirty = False
        self._committer: asyncio.Task[None] | None = None
        self._hurried = asyncio.Event()
        self._sought = 0  # how often positions were moved from outside (sought())
        for kind in DEAD_LETTER_KINDS:  # from 0, so that the first dead letter is an increase
            metrics.dead_letters.labels(metrics.service, self.topic, kind)

    def register(self, broker: KafkaBroker) -> None:
        s = self.settings
        self.handover = self._handover()
        subscriber = broker.subscriber(
            *self.topics,
            group_id=self.group_id,
            batch=True,
            max_records=s.consumer_max_records,
            batch_timeout_ms=s.consumer_batch_timeout_ms,
            fetch_max_wait_ms=s.consumer_fetch_max_wait_ms,
            fetch_min_bytes=s.consumer_fetch_min_bytes,
            # A group with no committed position (a first start, or a cluster that lost
            # its offsets) reads what was published before it joined: none of it is stale,
            # and repeats are dropped by id.
            auto_offset_reset="earliest",
            ack_policy=self.ack_policy,
            session_timeout_ms=s.consumer_session_timeout_ms,
            heartbeat_interval_ms=s.consumer_heartbeat_interval_ms,
            title=f"{self.group_id}:{self.topic}",
            listener=self.handover,
            partition_assignment_strategy=self.assignors,
        )
        self.subscriber = subscriber  # its consumer tells the lag
        poll = _long_poll(s.consumer_batch_timeout_ms, s.consumer_max_records,
                          FetchPace(busy_ms=min(s.consumer_busy_fetch_max_wait_ms,
                                                s.consumer_fetch_max_wait_ms),
                                    idle_ms=s.consumer_fetch_max_wait_ms))
        subscriber.get_msg = poll  # type: ignore[method-assign,assignment]
        # A fetched batch goes straight to consume().  FastStream's pipeline for a message
        # (context scopes, middlewares, its parser decoding every record, the handler's
        # arguments validated) cost about 1.4 ms a batch at a steady load, on each of the
        # three Kafka legs from a person's answer to the run's end, and this consumer
        # parses each record itself anyway (decision 28).
        subscriber.consume_one = self._consume_fetched  # type: ignore[method-assign,assignment]

        @subscriber
        async def consume(message: KafkaMessage) -> None:  # FastStream needs a handler
            raw = message.raw_message
            await self.consume(raw if isinstance(raw, tuple) else (raw,))

    async def _consume_fetched(self, fetched: Any) -> None:
        """One fetched batch, under the subscriber's lock (a stop waits for it to finish).

        An error is logged and the loop goes on, as FastStream does: consume() has already
        sought the batch back, so it is read again.
        """
        subscriber = self.subscriber
        if not subscriber.running:
            return
        records = fetched if isinstance(fetched, tuple) else (fetched,)
        with subscriber.lock:
            try:
                await self.consume(records)
            except Exception:
                log.exception("consuming a batch of %s failed; reading it again", self.topic)

    def _handover(self) -> OffsetHandover | None:
        if not self.takes_over:
            return None
        return OffsetHandover(self.takes_over, lambda: self.client,
                              admin_offsets(client_options(self.settings)))

    def intake(self, topic: str) -> Intake:
        return self.intakes.get(topic, self.default_intake)

    async def accepted(self, record: ConsumerRecord[Any, Any]) -> Envelope | None:
        """The record's envelope (parsed once, here) as the handler takes it, or None when
        it was dead-lettered or is nothing to the handler."""
        try:
            envelope = parse(record.value or b"")
        except ContractError as exc:
            await self.dead_letter(record, f"unparseable: {exc}", kind="unparseable")
            return None
        intake = self.intake(record.topic)
        if intake.accepts is not None and not intake.accepts(envelope):
            await self.dead_letter(record, f"{envelope.type} is not handled on {record.topic}",
                                   kind="not handled")
            return None
        self.metrics.consumed(record.topic, envelope.type)
        return intake.adapt(envelope) if intake.adapt is not None else envelope

    async def lag(self) -> dict[str, int]:
        """Messages behind the log end on this replica's partitions, per topic.

        The log end is the high watermark of the last fetch response and the position is
        the next offset to fetch: both are known to the client, so no request is sent.  A
        partition not fetched yet (no high watermark) is left out.
        """
        lag = dict.fromkeys(self.topics, 0)
        consumer = self.client
        if consumer is None:
            return lag
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None or tp.topic not in lag:
                continue
            try:
                position = await asyncio.wait_for(consumer.position(tp), timeout=1.0)
            except (TimeoutError, KafkaError):
                continue
            lag[tp.topic] += max(0, highwater - position)
        return lag

    async def consume(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        started = time.perf_counter()
        sought = self._sought
        wanted = [r for r in records if self._takes(r)]
        try:
            envelopes = [e for e in [await self.accepted(record) for record in wanted] if e]
            if envelopes:
                await self._handle(envelopes)
        except Exception:
            self.rewind(records)  # read again from the batch's first record
            raise
        if sought == self._sought:  # else the positions moved on meanwhile (sought())
            self.watermarks.done(records)
            self.commit_soon()
        self.metrics.handler_seconds.labels(self.metrics.service, self.topic).observe(
            time.perf_counter() - started
        )

    def _takes(self, record: ConsumerRecord[Any, Any]) -> bool:
        """Whether ``record`` is parsed: of a wanted type, and not passed over by its intake
        (either way its offset is committed with the batch)."""
        intake = self.intake(record.topic)
        if not _wanted(record, intake.types):
            return False
        if intake.passes_over is not None and intake.passes_over(record):
            self.metrics.passed_over_on(record.topic)
            return False
        return True

    # -- offsets ---------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The aiokafka consumer (None before the subscriber started)."""
        return getattr(self.subscriber, "consumer", None)

    def rewind(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        """Seek each partition of ``records`` back to its first record in them."""
        client = self.client
        if client is None:
            return
        earliest: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            earliest[tp] = min(earliest.get(tp, record.offset), record.offset)
        assigned = set(client.assignment())
        for tp, offset in earliest.items():
            if tp in assigned:  # one taken away meanwhile: its next owner reads it
                client.seek(tp, offset)

    def commit_soon(self) -> None:
        """Commit what is safe: at once after a quiet spell, then at most once per
        ``consumer_commit_seconds`` while batches keep coming (decision 31).

        Each commit is a request the broker writes to its offsets log: one per batch was
        about one per run in a burst, over a tenth of the broker's CPU.  What is handled
        and not committed yet is read again after a crash or a rebalance, and dropped as a
        repeat by id, as any redelivery is.  A stop commits at once (:meth:`hurry`).
        """
        self._dirty = True
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_while_dirty())

    async def _commit_while_dirty(self) -> None:
        while self._dirty:
            self._dirty = False
            await self.commit()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hurried.wait(), self.settings.consumer_commit_seconds)

    def hurry(self) -> None:
        """From now on, commit after each batch without waiting (the service is stopping):
        a commit that waits for its time is made now."""
        self._hurried.set()

    async def commit(self) -> None:
        client = self.client
        if client is None:
            return
        assigned = set(client.assignment())
        self.watermarks.keep_only(assigned)
        self.committed = {tp: o for tp, o in self.committed.items() if tp in assigned}
        offsets = {tp: offset for tp, offset in self.watermarks.safe().items()
                   if self.committed.get(tp) != offset}
        if not offsets:
            return
        try:
            await client.commit(offsets)
        except KafkaError as exc:  # a rebalance: the next commit (or owner) takes it up
            log.info("committing %s offsets failed: %r", self.topic, exc)
            return
        self.committed.update(offsets)

    def sought(self, positions: dict[TopicPartition, int]) -> None:
        """These partitions were sought (and committed) to ``positions`` from outside: a
        batch in flight now does not move their offsets past where they read again."""
        self._sought += 1
        for tp, offset in positions.items():
            self.watermarks.ends[tp] = offset
            self.watermarks.pending.pop(tp, None)
            self.committed[tp] = offset

    async def forget_positions(self) -> None:
        """After the broker lost its data: offsets on the lost log mean nothing any more."""
        self._sought += 1
        self.watermarks = Watermarks()
        self.committed = {}

    async def _handle(self, envelopes: list[Envelope]) -> None:
        error = await self._try(envelopes, self.settings.handler_attempts)
        if error is None:
            return
        # Isolate the poison message: each message on its own, dead-letter what still fails.
        for envelope in envelopes:
            single_error = await self._try([envelope], self.settings.handler_attempts)
            if single_error is not None:
                await self.dead_letter_envelope(envelope, f"handler failed: {single_error!r}")

    async def _try(self, envelopes: list[Envelope], attempts: int) -> BaseException | None:
        last: BaseException | None = None
        for attempt in range(attempts):
            try:
                with message_context(*_shared_ids(envelopes)):
                    await self.handler(envelopes)
                return None
            except INFRASTRUCTURE_ERRORS as exc:
                self.metrics.handler_errors.labels(self.metrics.service, self.topic, "infra").inc()
                log.warning("infrastructure error on %s, rewinding: %r", self.topic, exc)
                await asyncio.sleep(1.0)
                raise
            except OperationFailure as exc:
                if exc.code in (91, 189, 11600, 11602, 13436, 10107):  # shutdown / not primary
                    raise
                last = exc
            except Exception as exc:
                last = exc
            self.metrics.handler_errors.labels(self.metrics.service, self.topic, "handler").inc()
            log.error("handler failed on %s (attempt %d)", self.topic, attempt + 1,
                      exc_info=last)
            await asyncio.sleep(0.05 * (2**attempt))
        return last

    async def dead_letter(
        self, record: ConsumerRecord[Any, Any], reason: str, *, kind: str = "unparseable"
    ) -> None:
        key = record.key.decode(errors="replace") if isinstance(record.key, bytes) else None
        headers = {k[:KEPT_KEY]: (v or b"")[:KEPT_KEY].decode(errors="replace")
                   for k, v in list(record.headers or ())[:KEPT_HEADERS]}
        value = record.value or b""
        payload = DeadLettered(
            reason=_kept(reason, value),
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            consumer_group=self.group_id,
            original_key=key[:KEPT_KEY] if key is not None else None,
            original_value_b64=base64.b64encode(value[:KEPT_BYTES]).decode(),
            original_headers=headers,
        )
        await self._send_dead_letter(payload, key, kind)

    async def dead_letter_envelope(self, envelope: Envelope, reason: str) -> None:
        """A message that failed on its own (the batch was split): logged with its run."""
        value = encode(envelope)
        payload = DeadLettered(
            reason=_kept(reason, value),
            source_topic=self.topic,
            source_partition=-1,
            source_offset=-1,
            consumer_group=self.group_id,
            original_key=envelope.partition_key,
            original_value_b64=base64.b64encode(value[:KEPT_BYTES]).decode(),
            original_headers=headers_of(envelope),
        )
        with message_context(envelope.run_id, envelope.correlation_id):
            await self._send_dead_letter(payload, envelope.partition_key, "handler failed")

    async def _send_dead_letter(self, payload: DeadLettered, key: str | None, kind: str) -> None:
        self.metrics.dead_letters.labels(self.metrics.service, self.topic, kind).inc()
        log.error("dead-lettered a message from %s: %s", self.topic, payload.reason[:500])
        await self.publisher.publish([new_event(payload, producer=self.group_id, key=key)])


@dataclass(frozen=True)
class FetchPace:
    """How long the broker may hold this consumer's fetches: short while batches keep
    coming, long once a look found nothing (decision 41).

    aiokafka sends one fetch at a time to a broker, naming only the partitions that had
    nothing left to hand over when it was sent.  In a burst, records fetched while the
    handler works wait in the client; once handed over, their partition is fetchable
    again, but its next fetch waits for the one in flight, which the broker holds until
    data comes for *its* partitions or its wait runs out.  At the end of a stage of a
    burst nothing more comes for those: with a wait of a second the stack stood idle for
    most of one (tests/bench/timeline.py).  A short wait while busy bounds that stall; a
    long one while idle keeps an idle consumer asleep.  The client reads the wait each
    time it builds a fetch; it has no public setting for it, so :meth:`apply` sets the
    attribute it reads, and a test holds aiokafka to it.
    """

    busy_ms: int
    idle_ms: int

    @property
    def busy_look_ms(self) -> int:
        """How long a busy consumer looks for records before it counts as idle: two short
        fetches.  A look that found nothing leaves nothing waiting in the client, so every
        partition is in the long fetch that follows, and records for any of them end it."""
        return max(1, 2 * self.busy_ms)

    def apply(self, consumer: Any, busy: bool) -> None:
        fetcher = getattr(consumer, "_fetcher", None)
        if fetcher is not None and hasattr(fetcher, FETCH_WAIT_ATTRIBUTE):
            setattr(fetcher, FETCH_WAIT_ATTRIBUTE, self.busy_ms if busy else self.idle_ms)


FETCH_WAIT_ATTRIBUTE = "_fetch_max_wait_ms"  # aiokafka's Fetcher, read per fetch request


def _long_poll(
    wait_ms: int, max_records: int, pace: FetchPace | None = None,
) -> Callable[[Any], Coroutine[Any, Any, tuple[Any, ...]]]:
    """A batch fetch that waits for records, and only for them.

    FastStream's batch subscriber sleeps a further ``batch_timeout_ms`` after an empty
    poll; with a wait long enough to keep an idle consumer asleep, a message arriving in
    that sleep would wait for it.  ``getmany`` returns as soon as records arrive, so this
    waits exactly as long as there is nothing to do.  ``pace`` sets the broker's wait for
    the fetches that follow, by whether records came, and a busy consumer's look is short,
    so that a quiet spell goes back to long fetches soon (:class:`FetchPace`).
    """

    busy = False

    async def get_msg(consumer: Any) -> tuple[Any, ...]:
        nonlocal busy
        look = pace.busy_look_ms if busy and pace is not None else wait_ms
        batches = await consumer.getmany(timeout_ms=look, max_records=max_records)
        records = tuple(record for records in batches.values() for record in records)
        if pace is not None:
            busy = bool(records)
            pace.apply(consumer, busy=busy)
        return records

    return get_msg


def _wanted(record: ConsumerRecord[Any, Any], types: frozenset[str] | None) -> bool:
    """Whether a record is of one of ``types`` by its header, or has no type header."""
    if types is None:
        return True
    for key, value in record.headers or ():
        if key == "type":
            return (value or b"").decode(errors="replace") in types
    return True


def _kept(reason: str, value: bytes) -> str:
    """The reason, saying so when the original value is kept only in part."""
    if len(value) > KEPT_BYTES:
        cut = f" (the original is cut to its first {KEPT_BYTES} of {len(value)} bytes)"
        reason = reason[:7800] + cut
    return reason[:8000]


def _shared_ids(envelopes: Sequence[Envelope]) -> tuple[str | None, str | None]:
    """The run and correlation ids for the logs of a batch: only what all its messages share.

    A batch of several runs' messages logs no run id rather than the first one's; the
    handlers name the run in their messages.
    """
    runs = {e.run_id for e in envelopes}
    correlations = {e.correlation_id for e in envelopes}
    return (runs.pop() if len(runs) == 1 else None,
            correlations.pop() if len(correlations) == 1 else None)


__all__ = ["DLQ", "BatchConsumer", "BatchHandler", "Intake", "Publisher", "make_broker"]
