"""How Baton's settings become Kafka clients, topics, ACLs and the embedded broker's config."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity, SASLScram512
from hypothesis import given
from hypothesis import strategies as st

from contracts.topics import SERVICES, STEPS_OUTCOMES, TOPICS, used_by
from infra import kafka_acls
from infra.kafka_broker import BROKER_USER, EmbeddedKafka, new_cluster_id
from shared.kafka_connection import KafkaSettingsError, client_options, security
from shared.messaging import (
    FETCH_WAIT_ATTRIBUTE,
    BatchConsumer,
    FetchPace,
    _long_poll,
    make_broker,
    partition_of,
)
from shared.settings import ServiceSettings
from shared.topics import TopicPolicy, topics_of


def settings(**values: Any) -> ServiceSettings:
    return ServiceSettings(service_name="stage-coordinator", **values)


def test_plaintext_is_the_default_and_needs_no_security() -> None:
    assert security(settings()) is None
    options = client_options(settings(kafka_bootstrap="k:9092"))
    assert options == {"bootstrap_servers": "k:9092", "client_id": "stage-coordinator",
                       "security_protocol": "PLAINTEXT"}


def test_sasl_ssl_with_scram_carries_the_principal_and_tls() -> None:
    chosen = settings(kafka_security_protocol="SASL_SSL", kafka_username="stage-coordinator",
                      kafka_password="s3cret", kafka_client_id="coord-1")
    sasl = security(chosen)
    assert isinstance(sasl, SASLScram512) and sasl.use_ssl and sasl.ssl_context is not None
    options = client_options(chosen)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "stage-coordinator"
    assert options["sasl_plain_password"] == "s3cret"
    assert options["client_id"] == "coord-1" and options["ssl_context"] is not None


def test_ssl_without_sasl_is_tls_only() -> None:
    tls = security(settings(kafka_security_protocol="SSL"))
    assert type(tls) is BaseSecurity and tls.use_ssl


def test_sasl_without_credentials_is_refused_with_the_settings_to_set() -> None:
    with pytest.raises(KafkaSettingsError, match="BATON_KAFKA_USERNAME"):
        security(settings(kafka_security_protocol="SASL_PLAINTEXT"))


def test_a_key_without_its_certificate_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KafkaSettingsError, match="CERTFILE"):
        security(settings(kafka_security_protocol="SSL", kafka_ssl_keyfile=tmp_path / "k"))


def test_settings_reject_an_unknown_protocol() -> None:
    with pytest.raises(ValueError, match="SASL_SSL"):
        settings(kafka_security_protocol="KERBEROS")


def test_topics_are_created_with_the_configured_replication() -> None:
    outcomes = next(t for t in TOPICS if t.name == STEPS_OUTCOMES)
    new = TopicPolicy(replication_factor=3, min_insync_replicas=2).new_topic(outcomes)
    assert new.replication_factor == 3
    assert new.topic_configs == {"min.insync.replicas": "2"}
    assert TopicPolicy().new_topic(outcomes).topic_configs == {}


def test_each_service_ensures_only_the_topics_it_uses() -> None:
    assert {t.name for t in topics_of("step-runner")} == {
        "steps.dispatch", "steps.outcomes", "records.updates", "dlq"}
    assert topics_of("a-tool") == TOPICS
    for service in SERVICES:
        assert used_by(service), service


def test_the_acls_grant_what_the_topic_list_says_and_nothing_more() -> None:
    granted = kafka_acls.acls(kafka_acls.principals())
    for topic in TOPICS:
        writers = {a.principal for a in granted
                   if a.resource == topic.name and a.operation == kafka_acls.WRITE}
        assert writers == {f"User:{p}" for p in topic.producers if p in SERVICES}, topic.name
        readers = {a.principal for a in granted
                   if a.resource == topic.name and a.operation == kafka_acls.READ}
        assert readers == {f"User:{p}" for p in topic.consumers if p in SERVICES}, topic.name
    groups = {a.resource for a in granted if a.resource_type == kafka_acls.GROUP}
    assert groups == {"trigger", "stage-coordinator", "step-runner", "assignment",
                      "notification"}
    # prefixed: the coordinator reads the offsets "stage-coordinator-participants" committed
    # before decision 20, to take workitems.events over where that group had got to
    assert all(a.pattern == kafka_acls.PREFIXED for a in granted
               if a.resource_type == kafka_acls.GROUP)
    assert not any(a.operation == kafka_acls.CREATE for a in granted)


def test_named_outside_parties_get_their_acls() -> None:
    granted = kafka_acls.acls(kafka_acls.principals(prefix="baton-", upstream="User:crm"))
    assert kafka_acls.Acl("User:crm", kafka_acls.TOPIC, "records.changes",
                          kafka_acls.WRITE) in granted
    assert kafka_acls.Acl("User:baton-trigger", kafka_acls.TOPIC, "records.changes",
                          kafka_acls.READ) in granted


async def test_the_batch_poll_waits_for_records_and_never_sleeps_after_an_empty_one() -> None:
    class Consumer:
        def __init__(self) -> None:
            self.calls: list[dict[str, int]] = []

        async def getmany(self, **kwargs: int) -> dict[str, list[str]]:
            self.calls.append(kwargs)
            return {} if len(self.calls) == 1 else {"tp0": ["a", "b"], "tp1": ["c"]}

    consumer = Consumer()
    poll = _long_poll(500, 200)
    assert await poll(consumer) == ()
    assert await poll(consumer) == ("a", "b", "c")
    assert consumer.calls == [{"timeout_ms": 500, "max_records": 200}] * 2


async def test_fetches_are_short_while_records_come_and_long_once_a_look_found_none() -> None:
    class Fetcher:
        _fetch_max_wait_ms = 1000

    class Consumer:
        def __init__(self, answers: list[dict[str, list[str]]]) -> None:
            self.answers = answers
            self._fetcher = Fetcher()
            self.looks: list[int] = []

        async def getmany(self, **kwargs: int) -> dict[str, list[str]]:
            self.looks.append(kwargs["timeout_ms"])
            return self.answers.pop(0)

    consumer = Consumer([{"tp0": ["a"]}, {"tp0": ["b"]}, {}, {"tp1": ["c"]}])
    poll = _long_poll(500, 200, FetchPace(busy_ms=50, idle_ms=1000))
    waits = []
    for _ in range(4):
        await poll(consumer)
        waits.append(consumer._fetcher._fetch_max_wait_ms)
    assert waits == [50, 50, 1000, 50]
    # A busy consumer looks for two short fetches' time, an idle one for the whole look.
    assert consumer.looks == [500, 100, 100, 500]


def test_a_client_without_the_fetch_wait_is_left_as_it_is() -> None:
    class Consumer:
        _fetcher = object()  # another client version: nothing to set, nothing set

    FetchPace(busy_ms=50, idle_ms=1000).apply(Consumer(), busy=True)
    FetchPace(busy_ms=50, idle_ms=1000).apply(object(), busy=True)  # not started: no fetcher


def test_aiokafka_reads_the_fetch_wait_each_time_it_builds_a_fetch() -> None:
    """If the client stops reading the attribute per request, short fetches are gone."""
    from aiokafka.consumer.fetcher import Fetcher

    assert f"self.{FETCH_WAIT_ATTRIBUTE} = fetch_max_wait_ms" in inspect.getsource(
        Fetcher.__init__)
    assert f"self.{FETCH_WAIT_ATTRIBUTE}," in inspect.getsource(Fetcher._get_actions_per_node)


def test_the_subscriber_uses_the_long_poll() -> None:
    """If FastStream stops calling ``get_msg`` from its loop, the replacement would be dead."""
    broker = KafkaBroker("127.0.0.1:9")
    consumer = BatchConsumer(topics=["commands"], group_id="g", handler=_nothing,
                             publisher=None, metrics=_Metrics(), settings=settings())  # type: ignore[arg-type]
    consumer.register(broker)
    assert consumer.subscriber.get_msg.__qualname__.startswith("_long_poll")
    loop = inspect.getsource(type(consumer.subscriber)._run_consume_loop)
    assert "self.get_msg(consumer)" in loop


def test_a_secured_embedded_broker_has_no_plaintext_client_listener(tmp_path: Path) -> None:
    broker = EmbeddedKafka(tmp_path, port=1, controller_port=2,
                           scram_users={BROKER_USER: "pw"})
    config = broker._write_config().read_text()
    assert "listeners=SASL_PLAINTEXT://127.0.0.1:1,CONTROLLER://127.0.0.1:2" in config
    assert "StandardAuthorizer" in config and "allow.everyone.if.no.acl.found=false" in config
    open_broker = EmbeddedKafka(tmp_path / "open", port=1, controller_port=2)
    assert "authorizer" not in open_broker._write_config().read_text()


async def _nothing(_: Any) -> None:
    return None


class _Metrics:
    service = "test"

    class _Labels:
        def labels(self, *_: Any) -> Any:
            return self

        def inc(self) -> None:
            return None

    dead_letters = _Labels()


def test_a_cluster_id_never_looks_like_an_option(monkeypatch: pytest.MonkeyPatch) -> None:
    """One id in 64 would start with "-" if drawn as is; the storage tool rejects those."""
    drawn = iter([b"\xfb" + bytes(15), bytes(16)])  # the first encodes to "-w..."

    class FakeUuid:
        def __init__(self) -> None:
            self.bytes = next(drawn)

    monkeypatch.setattr("infra.kafka_broker.uuid.uuid4", FakeUuid)
    assert new_cluster_id() == "AAAAAAAAAAAAAAAAAAAAAA"


@given(st.binary(min_size=0, max_size=80), st.integers(min_value=1, max_value=64))
def test_a_keyed_message_goes_where_the_default_partitioner_sends_it(
        key: bytes, partitions: int) -> None:
    # The remembered hash changes nothing about where a key goes: other clients (the Java
    # one, aiokafka's default) must find a run's messages in the same partition.
    every = list(range(partitions))
    assert partition_of(key, every, every) == DefaultPartitioner()(key, every, every)
    assert partition_of(key, every, every) == partition_of(key, every, every[:1])


def test_a_message_with_no_key_goes_to_an_available_partition() -> None:
    assert {partition_of(None, [0, 1, 2, 3], [2]) for _ in range(20)} == {2}


def test_the_services_producer_partitions_with_the_remembered_hash() -> None:
    broker = make_broker(settings())
    assert broker._connection_kwargs["partitioner"] is partition_of  # the producer's options
