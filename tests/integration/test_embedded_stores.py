"""The embedded MongoDB as `make run` starts it: a shared SecantusDB plus one of its own for
each service named (decision 25), each with its own data, all stopped (or killed: an
outage) and restarted together."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pymongo import MongoClient

from infra.embedded import EmbeddedServers

pytestmark = pytest.mark.integration


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[EmbeddedServers]:
    servers = EmbeddedServers(tmp_path / "servers", own_stores=("stage-coordinator",))
    servers.start_mongo()  # MongoDB only: Kafka plays no part here
    try:
        yield servers
    finally:
        servers.stop()


def count(uri: str) -> int:
    with MongoClient(uri, serverSelectionTimeoutMS=10_000) as client:
        return client["stores"]["runs"].count_documents({})


def test_a_service_with_a_store_of_its_own_writes_where_no_other_service_reads(
    stores: EmbeddedServers,
) -> None:
    own = stores.store_uri("stage-coordinator")
    assert own != stores.mongodb_uri
    assert stores.store_uri("assignment") == stores.mongodb_uri  # shares the common one
    assert stores.service_env() == {"stage-coordinator": {
        "BATON_MONGODB_URI": own, "BATON_MONGODB_SHARED_URI": stores.mongodb_uri}}
    assert set(stores.stores) == {"mongo", "mongo-stage-coordinator"}

    with MongoClient(own) as client:
        client["stores"]["runs"].insert_one({"_id": "run-1"})

    assert count(own) == 1
    assert count(stores.mongodb_uri) == 0


def test_every_store_comes_back_on_its_port_with_its_data(stores: EmbeddedServers) -> None:
    own = stores.store_uri("stage-coordinator")
    with MongoClient(own) as client:
        client["stores"]["runs"].insert_one({"_id": "run-1"})
    ports = dict(stores.store_ports)

    stores.stop()  # a clean stop: the data is on disk
    assert not stores.procs
    stores.start_mongo()

    assert stores.store_ports == ports and stores.store_uri("stage-coordinator") == own
    assert count(own) == 1
    assert count(stores.mongodb_uri) == 0


def test_an_outage_kills_every_store_and_a_restart_brings_each_back(
    stores: EmbeddedServers,
) -> None:
    stores.kill_mongo()
    assert not stores.procs
    stores.start_mongo()

    assert set(stores.procs) == {"mongo", "mongo-stage-coordinator"}
    assert count(stores.store_uri("stage-coordinator")) >= 0 and count(stores.mongodb_uri) >= 0
