"""Per-service principals on a broker with SASL/SCRAM and its authorizer on.

The broker of this module has a SASL listener only, a SCRAM user per service, and the ACLs
that infra/kafka_acls.py derives from contracts/topics.py.  Each service connects as itself
with topic creation off.  A run goes end to end; then a forged step completion is refused
by the broker when it comes from a service that may not write ``steps.outcomes`` (the
trigger), from a known user with no ACL, or from a client with no credentials at all.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAuthorizationFailedError
from pymongo import AsyncMongoClient

from contracts import encode, new_event
from contracts.events.steps import StepCompleted
from contracts.topics import SERVICES, STEPS_OUTCOMES, TOPICS
from infra import kafka_acls
from infra.embedded import EmbeddedServers
from infra.kafka_broker import BROKER_USER
from infra.stack import ServiceStack
from shared.topics import ensure_topics

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "bt_acl_admin_token"
OUTSIDER = "outsider"


@pytest.fixture(scope="module")
def users() -> dict[str, str]:
    return {name: secrets.token_urlsafe(12) for name in (BROKER_USER, *SERVICES, OUTSIDER)}


@pytest.fixture(scope="module")
def secured(users: dict[str, str], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[EmbeddedServers]:
    data_dir = tmp_path_factory.mktemp("acl-servers")
    servers = EmbeddedServers(data_dir, kafka_users=users).start()
    try:
        yield servers
    finally:
        servers.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def options(servers: EmbeddedServers, user: str) -> dict[str, Any]:
    assert servers.kafka is not None
    return {"bootstrap_servers": servers.kafka_bootstrap, **servers.kafka.client_options(user)}


@pytest.fixture(scope="module")
def stack(secured: EmbeddedServers, users: dict[str, str],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceStack]:
    admin = options(secured, BROKER_USER)
    asyncio.run(ensure_topics(admin, TOPICS))
    asyncio.run(kafka_acls.apply(admin, kafka_acls.acls(kafka_acls.principals())))
    env = {**secured.env(), "BATON_MONGODB_DATABASE": "baton_acl", "BATON_LOG_FORMAT": "json",
           "BATON_ADMIN_TOKEN": ADMIN_TOKEN, "BATON_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
           "BATON_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "BATON_KAFKA_CREATE_TOPICS": "false"}
    stack = ServiceStack(env=env, log_dir=tmp_path_factory.mktemp("acl-logs"))
    try:
        for name in stack.names:
            stack.start_one(name, env={"BATON_KAFKA_USERNAME": name,
                                       "BATON_KAFKA_PASSWORD": users[name]})
        for name in stack.names:
            stack.wait_healthy(name, timeout=90)
        yield stack
    finally:
        stack.stop()


@pytest.fixture
async def runs(secured: EmbeddedServers) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(secured.mongodb_uri)
    yield client["baton_acl"].runs
    await client.close()


async def test_a_run_completes_with_each_service_as_its_own_principal(stack: ServiceStack,
                                                                       runs: Any) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    trigger = stack.url("trigger")
    async with httpx.AsyncClient(timeout=10) as client:
        published = await client.post(f"{trigger}/definitions", headers=headers,
                                      content=(ROOT / "examples" / "hello.yaml").read_bytes())
        assert published.status_code == 201, published.text
        started = await client.post(f"{trigger}/runs", json={"orchestration": "hello"},
                                    headers=headers)
        assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    for _ in range(300):
        doc = await runs.find_one({"_id": run_id}, {"status": 1})
        if doc and doc["status"] == "completed":
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} did not complete: {doc}")


def forged_completion() -> tuple[bytes, bytes]:
    envelope = new_event(StepCompleted(step="approve", attempt=1, outputs={"approved": True}),
                         producer="assignment", run_id="run-forged")
    return envelope.partition_key.encode(), encode(envelope)


async def send_as(servers: EmbeddedServers, user: str | None, topic: str) -> None:
    extra = options(servers, user) if user else {"bootstrap_servers": servers.kafka_bootstrap}
    producer = AIOKafkaProducer(**extra, request_timeout_ms=5000, enable_idempotence=True)
    try:
        await producer.start()
        key, value = forged_completion()
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


@pytest.mark.parametrize("user", ["trigger", "notification", OUTSIDER])
async def test_a_principal_that_may_not_write_step_outcomes_is_refused(
    stack: ServiceStack, secured: EmbeddedServers, user: str
) -> None:
    with pytest.raises((TopicAuthorizationFailedError, KafkaError)) as refused:
        await send_as(secured, user, STEPS_OUTCOMES)
    assert "authoriz" in repr(refused.value).lower(), refused.value


async def test_the_services_that_produce_step_outcomes_may(stack: ServiceStack,
                                                           secured: EmbeddedServers) -> None:
    await send_as(secured, "step-runner", STEPS_OUTCOMES)  # the broker takes it (and the
    # coordinator dead-letters an outcome for a run it does not know: nothing is applied)


async def test_a_client_without_credentials_cannot_produce(stack: ServiceStack,
                                                          secured: EmbeddedServers) -> None:
    with pytest.raises((KafkaConnectionError, KafkaError, asyncio.TimeoutError)):
        await asyncio.wait_for(send_as(secured, None, STEPS_OUTCOMES), timeout=30)


def test_the_acls_follow_the_topic_list() -> None:
    granted = kafka_acls.acls(kafka_acls.principals())
    writers = {a.principal for a in granted if a.resource == STEPS_OUTCOMES
               and a.operation == kafka_acls.WRITE}
    assert writers == {"User:step-runner", "User:assignment"}
    assert json.dumps([a.command() for a in granted])  # printable for operators
