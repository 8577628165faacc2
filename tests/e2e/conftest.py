"""A running Baton: the five service processes on the session's servers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from pymongo import AsyncMongoClient

from infra.stack import ServiceStack
from services.step_runner.actions import TEST_ACTIONS

ADMIN_TOKEN = "bt_e2e_admin_token"
ROOT = Path(__file__).resolve().parents[2]
E2E_SECRET = "e2e-secret-7Qw"  # the step-runner's BATON_SECRET_E2E_TOKEN
# What every test stack needs: http steps call receivers on 127.0.0.1 (refused by default),
# and the test actions (flaky) are not installed as production actions.
TEST_STACK_ENV = {"BATON_OUTBOUND_ALLOW": "127.0.0.1/32",
                  "BATON_EXTRA_ACTIONS": json.dumps(TEST_ACTIONS),
                  "BATON_SECRET_E2E_TOKEN": E2E_SECRET}


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    """Extra environment for the module's services (override it in a test module)."""
    return {}


@pytest.fixture(scope="module")
def stack(servers: Any, database: str, stack_env: dict[str, str],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceStack]:
    env = {**servers.env(database), "BATON_ADMIN_TOKEN": ADMIN_TOKEN, "BATON_LOG_FORMAT": "json",
           "BATON_TIMER_POLL_SECONDS": "0.2", "BATON_OUTBOX_SWEEP_SECONDS": "1",
           **TEST_STACK_ENV, **stack_env}
    stack = ServiceStack(env=env, log_dir=tmp_path_factory.mktemp("logs"))
    try:
        stack.start(timeout=90)
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def mongo(servers: Any, database: str) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(servers.mongodb_uri, tz_aware=True)
    yield client[database]
    await client.close()


async def wait_for(check: Any, *, timeout: float = 30.0, interval: float = 0.2) -> Any:  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(interval)


async def topic_messages(
    bootstrap: str, topic: str, *, run_id: str | None = None
) -> list[dict[str, Any]]:
    """Every message on a topic so far (optionally only one run's), read from the start."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        found: list[dict[str, Any]] = []
        while True:
            batch = await consumer.getmany(timeout_ms=1500)
            if not batch:
                break
            for records in batch.values():
                for record in records:
                    message = json.loads(record.value)
                    if run_id is None or message.get("run_id") == run_id:
                        found.append(message)
        return found
    finally:
        await consumer.stop()


async def publish_definition(
    client: httpx.AsyncClient, url: str, path: Path, headers: dict[str, str]
) -> dict[str, Any]:
    content = path.read_bytes()  # noqa: ASYNC240 (a small local file)
    response = await client.post(f"{url}/definitions", content=content, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()
