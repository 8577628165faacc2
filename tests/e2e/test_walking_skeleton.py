"""The walking skeleton: one background step through trigger, coordinator and step-runner."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from e2e.conftest import ROOT, publish_definition, topic_messages, wait_for

from contracts import encode, new_event
from contracts.events.records import RecordChanged
from services.stage_coordinator.history import read_history
from services.stage_coordinator.store import unpacked

pytestmark = pytest.mark.e2e


async def run_doc(mongo: Any, run_id: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = await mongo.runs.find_one({"_id": run_id})
    if found is None:
        return None
    doc = unpacked(found)  # the run's state as fields
    doc["history"] = await read_history(mongo.run_history, doc)
    return doc


async def test_api_started_run_completes_through_all_services(stack, admin, mongo, servers) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        trigger = stack.url("trigger")
        hello = ROOT / "examples" / "hello.yaml"
        published = await publish_definition(client, trigger, hello, admin)
        assert published["version"] >= 1
        response = await client.post(f"{trigger}/runs", json={"orchestration": "hello"},
                                     headers=admin)
        assert response.status_code == 202, response.text
        run_id = response.json()["run_id"]

        async def completed() -> dict[str, Any] | None:
            doc = await run_doc(mongo, run_id)
            return doc if doc and doc["status"] == "completed" else None

        doc = await wait_for(completed, timeout=30)
        kinds = [entry["kind"] for entry in doc["history"]]
        assert kinds[0] == "RunCreated"
        assert kinds.count("StepStarted") == 1 and kinds.count("StepSucceeded") == 1
        assert kinds[-1] == "RunStatusChanged" and doc["history"][-1]["status"] == "completed"

        # The last outbox stays in the run (no clear write); the coordinator's mark, written
        # about a second after publishing, covers it (decision 16).
        assert doc["outbox"] and doc["outbox_by"]

        async def outbox_marked() -> dict[str, Any] | None:
            marks = await mongo.system.find_one({"_id": "outbox-marks:runs"}) or {}
            mark = (marks.get("writers") or {}).get(doc["outbox_by"]) or {}
            through = mark.get("through")
            return mark if through is not None and through >= doc["outbox_at"] else None
        assert await wait_for(outbox_marked, timeout=5)

        shown = await client.get(f"{stack.url('stage-coordinator')}/runs/{run_id}", headers=admin)
        assert shown.status_code == 200 and shown.json()["status"] == "completed"

    dispatched = await topic_messages(servers.kafka_bootstrap, "steps.dispatch", run_id=run_id)
    outcomes = await topic_messages(servers.kafka_bootstrap, "steps.outcomes", run_id=run_id)
    lifecycle = await topic_messages(servers.kafka_bootstrap, "runs.events", run_id=run_id)
    assert [m["type"] for m in dispatched] == ["StepRequested"]
    assert [m["type"] for m in outcomes] == ["StepCompleted"]
    assert lifecycle[0]["type"] == "RunStarted"
    assert [m["type"] for m in lifecycle][-1] == "RunCompleted"
    assert len({m["correlation_id"] for m in dispatched + outcomes + lifecycle}) == 1


async def test_record_change_starts_one_run_even_when_delivered_twice(
    stack, admin, mongo, servers
) -> None:
    definition = (ROOT / "examples" / "hello.yaml").read_text() + (
        "trigger:\n  record:\n    object: Greeting\n    on: [created]\n"
    )
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{stack.url('trigger')}/definitions", content=definition,
                                     headers=admin)
        assert response.status_code == 201, response.text
    change = new_event(RecordChanged(object_type="Greeting", record_id="g-1", change="created",
                                     new={"text": "hi"}), producer="upstream", key="Greeting:g-1")
    producer = AIOKafkaProducer(bootstrap_servers=servers.kafka_bootstrap)
    await producer.start()
    try:
        for _ in range(2):
            await producer.send_and_wait("records.changes", encode(change), key=b"Greeting:g-1")
    finally:
        await producer.stop()

    async def finished() -> list[dict[str, Any]]:
        runs = await mongo.runs.find({"record_key": "Greeting:g-1"}).to_list(None)
        return runs if runs and all(r["status"] == "completed" for r in runs) else []

    runs = await wait_for(finished, timeout=30)
    assert len(runs) == 1


async def test_malformed_message_is_dead_lettered_and_consumer_keeps_going(
    stack, admin, mongo, servers
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=servers.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait("commands", b"{not json", key=b"poison")
        await producer.send_and_wait(
            "commands", json.dumps({"type": "Nonsense", "schema_version": 1}).encode(), key=b"p2"
        )
    finally:
        await producer.stop()

    async def dead_letters() -> list[dict[str, Any]]:
        letters = await topic_messages(servers.kafka_bootstrap, "dlq")
        mine = [m for m in letters if m["payload"]["original_key"] in ("poison", "p2")]
        return mine if len(mine) == 2 else []

    letters = await wait_for(dead_letters, timeout=30)
    reasons = sorted(m["payload"]["reason"] for m in letters)
    assert reasons[0].startswith("unparseable: not JSON")
    assert "unknown message type 'Nonsense'" in reasons[1]
    assert base64.b64decode(letters[0]["payload"]["original_value_b64"]) in (
        b"{not json", json.dumps({"type": "Nonsense", "schema_version": 1}).encode())
    # the coordinator still works after the poison
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{stack.url('trigger')}/runs",
                                     json={"orchestration": "hello"}, headers=admin)
    run_id = response.json()["run_id"]

    async def done() -> bool:
        doc = await run_doc(mongo, run_id)
        return bool(doc and doc["status"] == "completed")

    await wait_for(done, timeout=30)
