"""Session fixtures: the Kafka and MongoDB servers the integration and e2e tests use.

- BATON_KAFKA_BOOTSTRAP and BATON_MONGODB_URI set: use those servers (real clusters);
- BATON_TEST_BACKEND=containers: genuine Kafka and MongoDB through testcontainers (Docker);
- otherwise: the embedded Apache Kafka and SecantusDB, started once for the session.
Each test module gets its own MongoDB database, so tests do not see each other's data.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent


class TestBackendSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BATON_", extra="ignore")

    kafka_bootstrap: str | None = None
    mongodb_uri: str | None = None
    test_backend: str = "embedded"


@dataclass(frozen=True)
class Servers:
    kafka_bootstrap: str
    mongodb_uri: str

    def env(self, database: str) -> dict[str, str]:
        return {
            "BATON_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "BATON_MONGODB_URI": self.mongodb_uri,
            "BATON_MONGODB_DATABASE": database,
        }


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    settings = TestBackendSettings()
    if settings.kafka_bootstrap and settings.mongodb_uri:
        yield Servers(settings.kafka_bootstrap, settings.mongodb_uri)
        return
    if settings.test_backend == "containers":
        yield from _containers()
        return
    from infra.embedded import EmbeddedServers

    data_dir = ROOT / ".baton" / f"test-{os.getpid()}"
    embedded = EmbeddedServers(data_dir).start()
    try:
        yield Servers(embedded.kafka_bootstrap, embedded.mongodb_uri)
    finally:
        embedded.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _containers() -> Iterator[Servers]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.mongodb import MongoDbContainer

    with KafkaContainer().with_kraft() as kafka, MongoDbContainer("mongo:7") as mongo:
        yield Servers(kafka.get_bootstrap_server(), mongo.get_connection_url())


@pytest.fixture(scope="module")
def database() -> str:
    return f"baton_test_{uuid.uuid4().hex[:10]}"
