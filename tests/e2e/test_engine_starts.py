"""How runs start: record triggers (kinds of change, new/old filters, duplicates, one active
run per record), the HTTP API (inputs, Idempotency-Key, pinned versions) and StartRun
commands published on Kafka (v2, and v1 upcast at the edge)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from e2e.conftest import wait_for
from e2e.engine_support import (
    change,
    control,
    entries,
    publish,
    read_topic,
    run_doc,
    send,
    unique,
    wait_run,
)

from contracts import new_event
from contracts.envelope import derived_id, new_event_id
from contracts.events.commands import StartRun

pytestmark = pytest.mark.e2e

NOOP = """
stages:
  - name: only
    steps:
      - name: touch
        action: noop
        inputs: {seen: "${record}"}
"""


def triggered(name: str, object_type: str, extra: str = "") -> str:
    return f"name: {name}\ntrigger:\n  record:\n    object: {object_type}\n{extra}" + NOOP


async def started_by(bootstrap: str, events: list[Any]) -> set[tuple[str, str]]:
    """(cause event id, orchestration) of every StartRun the trigger sent for these events."""
    ids = {e.event_id for e in events}
    return {
        (m["causation_id"], m["payload"]["orchestration"])
        for m in await read_topic(bootstrap, "commands")
        if m["type"] == "StartRun" and m["causation_id"] in ids
    }


async def test_record_triggers_start_runs_by_kind_of_change(stack, admin, mongo, servers) -> None:
    obj = unique("Lead")
    on_created, on_updated = unique("on-created"), unique("on-updated")
    on_both, default_on = unique("on-both"), unique("on-default")
    await publish(stack, admin, triggered(on_created, obj, "    on: [created]\n"))
    await publish(stack, admin, triggered(on_updated, obj, "    on: [updated]\n"))
    await publish(stack, admin, triggered(on_both, obj, "    on: [created, updated]\n"))
    await publish(stack, admin, triggered(default_on, obj))  # default: created and updated
    # A record of another type with the same id and fields starts nothing.  Every change
    # shares one Kafka key, so the trigger sees them in this order and the last one
    # (which starts runs) tells us it has handled the others.
    key = f"{obj}:r1"
    other = change(unique("Contact"), "r1", "created", {"name": "Ada"})
    other = other.model_copy(update={"key": key})
    deleted = change(obj, "r1", "deleted", old={"name": "Ada"})
    created = change(obj, "r1", "created", {"name": "Ada"})
    updated = change(obj, "r1", "updated", {"name": "Ada L."}, {"name": "Ada"})
    await send(servers.kafka_bootstrap, "records.changes", other, deleted, created, updated)

    expected = {
        (created.event_id, on_created), (created.event_id, on_both),
        (created.event_id, default_on),
        (updated.event_id, on_updated), (updated.event_id, on_both),
        (updated.event_id, default_on),
    }
    docs = {}
    for event_id, name in expected:
        docs[(event_id, name)] = await wait_run(mongo, derived_id(event_id, name), "completed")
    assert await started_by(servers.kafka_bootstrap, [other, deleted, created, updated]) == expected
    assert await mongo.runs.count_documents({"record_key": key}) == len(expected)

    run = docs[(updated.event_id, on_both)]
    assert run["record"] == {"name": "Ada L."}  # the record after the change
    assert run["started_by"] == f"record:{obj}"
    assert run["steps"]["touch"]["outputs"] == {"seen": {"name": "Ada L."}}
    assert docs[(created.event_id, on_created)]["record"] == {"name": "Ada"}


async def test_trigger_condition_sees_new_and_old_values(stack, admin, mongo, servers) -> None:
    obj = unique("Opportunity")
    name = unique("closed-won")
    await publish(stack, admin, triggered(
        name, obj,
        "    on: [created, updated]\n"
        "    when: \"new.stage == 'Closed Won' && has(old.stage) && old.stage != 'Closed Won'\"\n",
    ))

    def stage_change(kind: str, new: str, old: str | None, amount: int = 10) -> Any:
        return change(obj, "o1", kind, {"stage": new, "amount": amount},
                      {"stage": old, "amount": amount} if old else None)

    to_negotiation = stage_change("updated", "Negotiation", "Prospecting")
    amount_only = stage_change("updated", "Closed Won", "Closed Won", amount=20)
    born_won = stage_change("created", "Closed Won", None)
    reopened = stage_change("updated", "Prospecting", "Closed Won")
    won = stage_change("updated", "Closed Won", "Negotiation", amount=30)
    events = [to_negotiation, amount_only, born_won, reopened, won]
    await send(servers.kafka_bootstrap, "records.changes", *events)

    run = await wait_run(mongo, derived_id(won.event_id, name), "completed")
    assert run["record"] == {"stage": "Closed Won", "amount": 30}
    assert await started_by(servers.kafka_bootstrap, events) == {(won.event_id, name)}
    assert await mongo.runs.count_documents({"orchestration": name}) == 1


async def test_same_record_event_delivered_twice_starts_one_run(stack, admin, mongo,
                                                                 servers) -> None:
    obj = unique("Invoice")
    name = unique("invoice")
    await publish(stack, admin, triggered(name, obj, "    on: [updated]\n"))
    event = change(obj, "i1", "updated", {"paid": True}, {"paid": False})
    await send(servers.kafka_bootstrap, "records.changes", event, event)
    run_id = derived_id(event.event_id, name)
    run = await wait_run(mongo, run_id, "completed")

    commands = [m for m in await read_topic(servers.kafka_bootstrap, "commands", run_id=run_id)
                if m["type"] == "StartRun"]
    assert len(commands) == 2 and len({m["event_id"] for m in commands}) == 1
    assert await mongo.runs.count_documents({"record_key": f"{obj}:i1"}) == 1
    assert len(entries(run, "RunCreated")) == 1 and len(entries(run, "StepStarted")) == 1
    lifecycle = await read_topic(servers.kafka_bootstrap, "runs.events", run_id=run_id)
    assert [m["type"] for m in lifecycle].count("RunStarted") == 1
    dispatched = await read_topic(servers.kafka_bootstrap, "steps.dispatch", run_id=run_id)
    assert len(dispatched) == 1


async def test_at_most_one_active_run_per_record(stack, admin, mongo, servers) -> None:
    obj = unique("Quote")
    name = unique("one-per-quote")
    await publish(stack, admin, f"""
name: {name}
trigger:
  record: {{object: {obj}, on: [created, updated]}}
  at_most_one_active_per_record: true
stages:
  - name: review
    steps:
      - name: gate
        action: flaky
        inputs: {{fail_times: "${{record.failures}}", fatal: true}}
        retries: {{max_attempts: 1}}
""")
    bootstrap = servers.kafka_bootstrap
    # The first run stops in Error: still active, so it holds the record.
    first = change(obj, "q1", "created", {"failures": 1})
    await send(bootstrap, "records.changes", first)
    first_run = derived_id(first.event_id, name)
    held = await wait_run(mongo, first_run, "error")
    assert held["active_key"] == f"{name}|{obj}:q1"

    second = change(obj, "q1", "updated", {"failures": 0}, {"failures": 1})
    elsewhere = change(obj, "q2", "created", {"failures": 0})
    await send(bootstrap, "records.changes", second, elsewhere)
    second_run = derived_id(second.event_id, name)
    # Another record is not held back.
    await wait_run(mongo, derived_id(elsewhere.event_id, name), "completed")

    async def rejected() -> list[dict[str, Any]]:
        return [m for m in await read_topic(bootstrap, "runs.events", run_id=second_run)
                if m["type"] == "RunStartRejected"]

    rejection = (await wait_for(rejected, timeout=15))[0]
    assert rejection["payload"]["record_key"] == f"{obj}:q1"
    assert "active run" in rejection["payload"]["reason"]
    assert await run_doc(mongo, second_run) is None
    assert [m["type"] for m in await read_topic(bootstrap, "steps.dispatch",
                                                run_id=second_run)] == []

    # Once the first run is over, the record may start a new one.
    await control(stack, admin, first_run, "cancel", reason="make room")
    canceled = await wait_run(mongo, first_run, "canceled")
    assert "active_key" not in canceled
    third = change(obj, "q1", "updated", {"failures": 0}, {"failures": 1})
    await send(bootstrap, "records.changes", third)
    await wait_run(mongo, derived_id(third.event_id, name), "completed")
    statuses = sorted([d["status"] async for d in mongo.runs.find({"record_key": f"{obj}:q1"})])
    assert statuses == ["canceled", "completed"]


async def test_api_starts_runs_with_inputs_and_idempotency_key(stack, admin, mongo,
                                                               servers) -> None:
    name = unique("api-start")
    text = f"""
name: {name}
inputs:
  greeting: {{type: string, required: true}}
  count: {{type: integer, default: 2}}
stages:
  - name: only
    steps:
      - name: echo
        action: noop
        inputs: {{text: "${{vars.greeting}} x${{vars.count}}", count: "${{vars.count}}"}}
"""
    assert (await publish(stack, admin, text))["version"] == 1
    second = text.replace("x${vars.count}", "times ${vars.count}")
    assert (await publish(stack, admin, second))["version"] == 2
    trigger = stack.url("trigger")
    async with httpx.AsyncClient(timeout=10) as client:
        missing = await client.post(f"{trigger}/runs", json={"orchestration": name},
                                    headers=admin)
        assert missing.status_code == 422 and "greeting" in missing.text
        unknown = await client.post(f"{trigger}/runs", json={"orchestration": unique("nope")},
                                    headers=admin)
        assert unknown.status_code == 404
        anonymous = await client.post(f"{trigger}/runs", json={"orchestration": name,
                                                               "inputs": {"greeting": "hi"}})
        assert anonymous.status_code == 401

        key = new_event_id()
        body = {"orchestration": name, "inputs": {"greeting": "hi"}, "version": 1}
        first = await client.post(f"{trigger}/runs", json=body,
                                  headers={**admin, "Idempotency-Key": key})
        again = await client.post(f"{trigger}/runs", json=body,
                                  headers={**admin, "Idempotency-Key": key})
        other = await client.post(f"{trigger}/runs", json={**body, "version": None,
                                                           "inputs": {"greeting": "yo",
                                                                      "count": 5}},
                                  headers={**admin, "Idempotency-Key": new_event_id()})
    assert first.status_code == again.status_code == other.status_code == 202
    run_id = first.json()["run_id"]
    assert again.json()["run_id"] == run_id and other.json()["run_id"] != run_id

    run = await wait_run(mongo, run_id, "completed")
    assert run["version"] == 1 and run["vars"] == {"greeting": "hi", "count": 2}
    assert run["steps"]["echo"]["outputs"] == {"text": "hi x2", "count": 2}
    assert run["started_by"] == "admin"
    latest = await wait_run(mongo, other.json()["run_id"], "completed")
    assert latest["version"] == 2
    assert latest["steps"]["echo"]["outputs"] == {"text": "yo times 5", "count": 5}

    assert await mongo.runs.count_documents({"orchestration": name}) == 2
    assert len(entries(run, "RunCreated")) == 1
    assert len(await read_topic(servers.kafka_bootstrap, "steps.dispatch", run_id=run_id)) == 1


async def test_start_run_commands_on_kafka_start_runs(stack, admin, mongo, servers) -> None:
    name = unique("by-command")
    await publish(stack, admin, f"""
name: {name}
inputs:
  who: {{type: string, default: nobody}}
stages:
  - name: only
    steps:
      - name: hello
        action: set_variables
        inputs: {{greeted: "hello ${{vars.who}}"}}
""")
    v2_run = new_event_id()
    command = new_event(StartRun(orchestration=name, inputs={"who": "kafka"},
                                 requested_by="upstream-system"),
                        producer="upstream", run_id=v2_run)
    v1_run = new_event_id()
    v1 = {
        "event_id": new_event_id(), "type": "StartRun", "schema_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(), "run_id": v1_run,
        "correlation_id": new_event_id(), "producer": "legacy",
        "payload": {"orchestration_name": name, "variables": {"who": "legacy"}},
    }
    await send(servers.kafka_bootstrap, "commands", command, command,
               raw=json.dumps(v1).encode(), key=v1_run)

    run = await wait_run(mongo, v2_run, "completed")
    assert run["vars"] == {"who": "kafka", "greeted": "hello kafka"}
    assert run["started_by"] == "upstream-system" and run["version"] == 1
    assert len(entries(run, "RunCreated")) == 1
    legacy = await wait_run(mongo, v1_run, "completed")
    assert legacy["vars"] == {"who": "legacy", "greeted": "hello legacy"}


async def test_only_starters_start_runs_with_inputs_that_fit(stack, admin, mongo) -> None:
    """starters and typed inputs, with the groups a token was issued with."""
    guide, trigger = stack.url("assignment"), stack.url("trigger")
    name = unique("guarded")
    await publish(stack, admin, f"""
name: {name}
starters: {{groups: [payroll_team]}}
inputs:
  payroll_url: {{type: string, required: true, pattern: "^https://payroll[.]example/"}}
stages:
  - name: only
    steps: [{{name: touch, action: noop, inputs: {{url: "${{vars.payroll_url}}"}}}}]
""")
    async with httpx.AsyncClient(timeout=10) as client:
        directory = {"users": [{"id": "pam", "name": "Pam", "groups": ["payroll_team"]},
                               {"id": "oscar", "name": "Oscar"}],
                     "groups": [{"id": "payroll_team", "name": "Payroll", "members": ["pam"]}]}
        (await client.put(f"{guide}/directory", json=directory, headers=admin)).raise_for_status()
        tokens = {user: (await client.post(f"{guide}/tokens", json={"user_id": user},
                                           headers=admin)).json()["token"]
                  for user in ("pam", "oscar")}
        body = {"orchestration": name, "inputs": {"payroll_url": "https://payroll.example/p"}}
        refused = await client.post(f"{trigger}/runs", json=body,
                                    headers={"Authorization": f"Bearer {tokens['oscar']}"})
        pam = {"Authorization": f"Bearer {tokens['pam']}"}
        bad = await client.post(f"{trigger}/runs", headers=pam, json={
            "orchestration": name, "inputs": {"payroll_url": "http://169.254.169.254/"}})
        started = await client.post(f"{trigger}/runs", json=body, headers=pam)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert bad.status_code == 422 and bad.json()["errors"][0]["input"] == "payroll_url"
    assert started.status_code == 202, started.text
    run = await wait_run(mongo, started.json()["run_id"], "completed")
    assert run["started_by"] == "pam"
