"""The step-runner's actions on the real stack: http (templated request, mapped response),
set_variables, publish_record_update, wait, per-step timeouts, retries with back-off,
retryable against fatal errors, a custom action, outbound calls refused where not
allowlisted, and secrets named by the definition."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from e2e.conftest import E2E_SECRET, wait_for
from e2e.engine_support import (
    Reply,
    ScriptedServer,
    entries,
    publish,
    read_topic,
    run_doc,
    serve_scripted,
    start,
    unique,
    wait_run,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def http_server() -> Iterator[ScriptedServer]:
    yield from serve_scripted()

ORDER = {"object_type": "Order", "record_id": "o-17",
         "fields": {"customer": "Ada", "amount": 21, "lines": [{"sku": "a"}, {"sku": "b"}]}}


async def test_http_templates_the_request_and_maps_the_response(
        stack, admin, mongo, servers, http_server: ScriptedServer) -> None:
    orders = http_server.script(Reply(201, {"id": "ord-9", "items": [{"sku": "a", "qty": 2}]}))
    hook = http_server.script(Reply(200, {"ok": True}))
    name = unique("http")
    await publish(stack, admin, f"""
name: {name}
inputs:
  orders_url: {{type: string, default: "{orders}"}}
  hook_url: {{type: string, default: "{hook}"}}
  tier: {{type: string, default: gold}}
stages:
  - name: place
    steps:
      - name: create_order
        action: http
        inputs:
          url: "${{vars.orders_url}}"
          method: PUT
          headers: {{X-Run: "${{run.id}}", X-Customer: "${{record.customer}}"}}
          json:
            customer: "${{record.customer}}"
            total: "${{record.amount * 2}}"
            skus: "${{record.lines.map(l, l.sku)}}"
            note: "order for ${{record.customer}} (${{vars.tier}})"
          outputs:
            order_id: "response.body.id"
            first_qty: "response.body.items[0].qty"
            served_by: "response.headers['x-served-by']"
            created: "response.status == 201"
  - name: remember
    steps:
      - name: keep
        action: set_variables
        inputs:
          order_id: "${{steps.create_order.outputs.order_id}}"
          qty: "${{steps.create_order.outputs.first_qty}}"
  - name: notify
    entry: "vars.order_id == 'ord-9' && vars.qty == 2"
    steps:
      - name: webhook
        action: http
        inputs:
          url: "${{vars.hook_url}}"
          body:
            text: "Order ${{vars.order_id}} placed for ${{record.customer}}"
            qty: "${{vars.qty}}"
""")
    run_id = await start(stack, admin, name, record=ORDER)
    run = await wait_run(mongo, run_id)
    assert run["status"] == "completed", run.get("error")

    (call,) = http_server.calls(orders)
    assert call.method == "PUT"
    assert call.body == {"customer": "Ada", "total": 42, "skus": ["a", "b"],
                         "note": "order for Ada (gold)"}
    assert call.headers["x-run"] == run_id and call.headers["x-customer"] == "Ada"
    assert call.headers["idempotency-key"] == f"{run_id}:create_order:visit-1"
    assert call.headers["content-type"] == "application/json"
    assert run["steps"]["create_order"]["outputs"] == {
        "status": 201, "order_id": "ord-9", "first_qty": 2, "served_by": "scripted",
        "created": True}
    assert run["vars"]["order_id"] == "ord-9" and run["vars"]["qty"] == 2
    # a `body` map (as in the docs' examples) is sent as JSON too
    (posted,) = http_server.calls(hook)
    assert posted.method == "POST"
    assert posted.body == {"text": "Order ord-9 placed for Ada", "qty": 2}
    assert posted.headers["content-type"] == "application/json"


async def test_publish_record_update_sends_to_records_updates(stack, admin, mongo,
                                                              servers) -> None:
    name = unique("write-back")
    await publish(stack, admin, f"""
name: {name}
stages:
  - name: write
    steps:
      - name: mark_own
        action: publish_record_update
        inputs:
          fields: {{status: Approved, amount: "${{record.amount}}"}}
      - name: mark_other
        action: publish_record_update
        inputs:
          object_type: Customer
          record_id: "${{record.customer}}"
          fields: {{last_order: "${{run.id}}"}}
      - name: bad_update
        action: publish_record_update
        optional: true
        inputs: {{fields: "not a map"}}
        retries: {{max_attempts: 3}}
""")
    run_id = await start(stack, admin, name, record=ORDER)
    run = await wait_run(mongo, run_id)
    assert run["status"] == "completed", run.get("error")
    updates = await read_topic(servers.kafka_bootstrap, "records.updates", run_id=run_id)
    by_step = {m["payload"]["step"]: m["payload"] for m in updates}
    assert len(updates) == 2
    assert by_step["mark_own"] == {"object_type": "Order", "record_id": "o-17",
                                   "fields": {"status": "Approved", "amount": 21},
                                   "step": "mark_own"}
    assert by_step["mark_other"] == {"object_type": "Customer", "record_id": "Ada",
                                     "fields": {"last_order": run_id}, "step": "mark_other"}
    assert run["steps"]["mark_own"]["outputs"] == {"published": True}
    # a malformed update is a fatal error: one attempt, no retries
    bad = run["steps"]["bad_update"]
    assert bad["status"] == "failed" and bad["attempt"] == 1
    assert "publish_record_update" in bad["error"]


async def test_publish_record_update_without_a_record_fails_the_step(stack, admin,
                                                                     mongo) -> None:
    name = unique("no-record")
    await publish(stack, admin, f"""
name: {name}
stages:
  - name: write
    steps:
      - name: mark
        action: publish_record_update
        inputs: {{fields: {{status: Done}}}}
""")
    run = await wait_run(mongo, await start(stack, admin, name), "error")
    assert run["steps"]["mark"]["attempt"] == 1
    assert "record" in run["steps"]["mark"]["error"]


async def test_wait_step_is_a_coordinator_timer(stack, admin, mongo, servers) -> None:
    name = unique("wait")
    await publish(stack, admin, f"""
name: {name}
inputs:
  pause: {{type: string, default: 700ms}}
stages:
  - name: only
    steps:
      - name: pause
        action: wait
        inputs: {{duration: "${{vars.pause}}"}}
      - name: after_pause
        action: noop
        after: [pause]
""")
    run_id = await start(stack, admin, name)
    run = await wait_run(mongo, run_id)
    assert run["status"] == "completed", run.get("error")
    started = entries(run, "StepStarted", step="pause")[0]["at"]
    done = entries(run, "StepSucceeded", step="pause")[0]
    assert (done["at"] - started).total_seconds() >= 0.7  # not before the wait was over
    assert "waited_until" in done["outputs"]
    assert len(entries(run, "TimerScheduled")) == 1
    dispatched = await read_topic(servers.kafka_bootstrap, "steps.dispatch", run_id=run_id)
    assert [m["payload"]["step"] for m in dispatched] == ["after_pause"]


async def test_step_timeout_fails_a_slow_attempt(stack, admin, mongo,
                                                 http_server: ScriptedServer) -> None:
    slow = http_server.script(Reply(delay=3.0))
    name = unique("timeout")
    await publish(stack, admin, f"""
name: {name}
stages:
  - name: only
    steps:
      - name: slow_call
        action: http
        inputs: {{url: "{slow}"}}
        timeout: 400ms
        retries: {{max_attempts: 1}}
""")
    run = await wait_run(mongo, await start(stack, admin, name), "error")
    step = run["steps"]["slow_call"]
    assert step["error"] == "timed out after 0.4s"
    # the timeout ended the one attempt; the 3 s answer never came into it
    assert len(entries(run, "StepFailed", step="slow_call")) == 1
    assert "outputs" not in step or not step["outputs"]
    assert run["error"] == "only.slow_call: timed out after 0.4s"


async def test_a_slow_step_delays_no_other_run(stack, admin, mongo,
                                               http_server: ScriptedServer) -> None:
    """Regression: the step-runner ran a consumed batch as one, so while one http call
    hung, no other background step of any run was run."""
    gate = threading.Event()
    hung = http_server.script(Reply(gate=gate))
    slow, quick = unique("hung"), unique("quick")
    await publish(stack, admin, f"""
name: {slow}
stages:
  - name: only
    steps: [{{name: call, action: http, inputs: {{url: "{hung}"}}, timeout: 60s}}]
""")
    await publish(stack, admin, f"""
name: {quick}
stages:
  - name: only
    steps: [{{name: note, action: set_variables, inputs: {{done: true}}}}]
""")
    try:
        slow_run = await start(stack, admin, slow)
        await wait_for(_called(http_server, hung, 1), timeout=20, interval=0.1)
        quick_runs = [await start(stack, admin, quick) for _ in range(3)]
        for run_id in quick_runs:  # all of them while the call still hangs
            assert (await wait_run(mongo, run_id))["status"] == "completed"
        assert (await run_doc(mongo, slow_run))["status"] == "running"
    finally:
        gate.set()
    assert (await wait_run(mongo, slow_run))["status"] == "completed"


async def test_a_step_runner_killed_mid_step_runs_that_step_again_and_nothing_else(
        stack, admin, mongo, http_server: ScriptedServer) -> None:
    """Offsets are committed only below a step whose outcome is not stored: the dispatch
    of the step that was running when the step-runner died is read again and run again;
    the steps stored meanwhile are answered from the store, not called again."""
    gate = threading.Event()
    hung, quick_url = http_server.script(Reply(gate=gate)), http_server.script(Reply())
    slow, quick = unique("killed"), unique("stored")
    for name, url in ((slow, hung), (quick, quick_url)):
        await publish(stack, admin, f"""
name: {name}
stages:
  - name: only
    steps: [{{name: call, action: http, inputs: {{url: "{url}"}}, timeout: 60s,
              retries: {{max_attempts: 1}}}}]
""")
    try:
        slow_run = await start(stack, admin, slow)
        await wait_for(_called(http_server, hung, 1), timeout=20, interval=0.1)
        for run_id in [await start(stack, admin, quick) for _ in range(2)]:
            assert (await wait_run(mongo, run_id))["status"] == "completed"

        stack.kill_one("step-runner")
        stack.start_one("step-runner")
        await asyncio.to_thread(stack.wait_healthy, "step-runner", timeout=60)
        await wait_for(_called(http_server, hung, 2), timeout=40, interval=0.2)
    finally:
        gate.set()
    assert (await wait_run(mongo, slow_run, within=40))["status"] == "completed"
    assert len(http_server.calls(quick_url)) == 2  # stored before the crash: not re-run


def _called(server: ScriptedServer, url: str, times: int) -> Any:
    async def check() -> bool:
        return len(server.calls(url)) >= times
    return check


async def test_retries_back_off_and_then_succeed(stack, admin, mongo,
                                                 http_server: ScriptedServer) -> None:
    flaky = http_server.script(Reply(500, {"e": 1}), Reply(429, {"e": 2}), Reply(200, {"v": 3}))
    name = unique("retry")
    await publish(stack, admin, f"""
name: {name}
stages:
  - name: only
    steps:
      - name: call
        action: http
        inputs: {{url: "{flaky}", outputs: {{v: "response.body.v"}}}}
        retries: {{max_attempts: 3, backoff: 300ms, jitter: 0}}
""")
    run_id = await start(stack, admin, name)
    run = await wait_run(mongo, run_id)
    assert run["status"] == "completed", run.get("error")
    assert run["steps"]["call"]["outputs"] == {"status": 200, "v": 3}
    assert run["steps"]["call"]["attempt"] == 3
    calls = http_server.calls(flaky)
    # one operation, retried: every attempt carries the same key to the external system
    assert [c.headers["idempotency-key"] for c in calls] == [f"{run_id}:call:visit-1"] * 3
    # the waits double: 300ms, then 600ms
    scheduled = entries(run, "StepRetryScheduled", step="call")
    delays = [(e["timer"]["due_at"] - e["at"]).total_seconds() for e in scheduled]
    assert delays == pytest.approx([0.3, 0.6], abs=0.01)
    assert calls[1].started - calls[0].finished >= 0.3 - 0.05
    assert calls[2].started - calls[1].finished >= 0.6 - 0.05
    assert "answered 500" in scheduled[0]["error"] and "answered 429" in scheduled[1]["error"]


async def test_fatal_errors_are_not_retried_but_retryable_ones_are(
        stack, admin, mongo, http_server: ScriptedServer) -> None:
    rejecting = http_server.script(Reply(400, {"error": "bad input"}))
    failing = http_server.script(Reply(503, {"error": "down"}))
    name = unique("fatal")
    await publish(stack, admin, f"""
name: {name}
inputs:
  url: {{type: string, required: true}}
stages:
  - name: only
    steps:
      - name: call
        action: http
        inputs: {{url: "${{vars.url}}"}}
        retries: {{max_attempts: 3, backoff: 100ms, jitter: 0}}
""")
    fatal = await start(stack, admin, name, {"url": rejecting})
    retried = await start(stack, admin, name, {"url": failing})
    bad_url = await start(stack, admin, name, {"url": "ftp://example.com/x"})

    run = await wait_run(mongo, fatal, "error")
    assert run["steps"]["call"]["attempt"] == 1 and len(http_server.calls(rejecting)) == 1
    assert "answered 400" in run["error"] and "bad input" in run["error"]
    assert entries(run, "StepRetryScheduled") == []

    run = await wait_run(mongo, retried, "error")
    assert run["steps"]["call"]["attempt"] == 3 and len(http_server.calls(failing)) == 3
    assert len(entries(run, "StepRetryScheduled")) == 2
    assert "answered 503" in run["error"]

    run = await wait_run(mongo, bad_url, "error")
    assert run["steps"]["call"]["attempt"] == 1
    assert "absolute http(s) url" in run["error"]


async def test_custom_action(stack, admin, mongo) -> None:
    name = unique("custom")
    await publish(stack, admin, f"""
name: {name}
stages:
  - name: only
    steps:
      - name: eventually
        action: flaky
        inputs: {{fail_times: 2, echo: "${{run.orchestration}}"}}
        retries: {{max_attempts: 3, backoff: 100ms, jitter: 0}}
      - name: at_once
        action: flaky
        inputs: {{fail_times: 1, fatal: true}}
        retries: {{max_attempts: 3, backoff: 100ms}}
        optional: true
""")
    run_id = await start(stack, admin, name)
    run = await wait_run(mongo, run_id)
    assert run["status"] == "completed", run.get("error")
    assert run["steps"]["eventually"]["outputs"] == {
        "attempt": 3, "idempotency_key": f"{run_id}:eventually:3", "stage": "only",
        "step": "eventually", "echo": name}
    at_once = run["steps"]["at_once"]
    assert at_once["status"] == "failed" and at_once["attempt"] == 1
    attempts = await mongo.step_attempts.find({"run_id": run_id}).to_list(None)
    outcome: dict[str, list[Any]] = {}
    for doc in sorted(attempts, key=lambda d: d["attempt"]):
        outcome.setdefault(doc["step"], []).append(doc["outcome"])
    assert outcome == {"eventually": ["failed", "failed", "completed"], "at_once": ["failed"]}


async def test_http_to_an_address_not_allowlisted_fails_at_once(
        stack, admin, mongo, http_server: ScriptedServer) -> None:
    hook = http_server.script(Reply(200, {"ok": True}))
    elsewhere = hook.replace("127.0.0.1", "127.0.0.2")  # loopback, but not allowlisted
    name = unique("outbound")
    await publish(stack, admin, f"""
name: {name}
inputs:
  hook_url: {{type: string}}
stages:
  - name: only
    steps:
      - name: call
        action: http
        inputs: {{url: "${{vars.hook_url}}"}}
        retries: {{max_attempts: 3, backoff: 100ms}}
""")
    run_id = await start(stack, admin, name, {"hook_url": elsewhere})
    run = await wait_run(mongo, run_id)
    call = run["steps"]["call"]
    assert run["status"] == "error" and call["status"] == "failed"
    assert call["attempt"] == 1, "a refused call is not retried"
    assert "127.0.0.2 refused: a loopback address" in call["error"]
    assert http_server.calls(hook) == []


async def test_secrets_reach_only_the_system_called(
        stack, admin, mongo, servers, http_server: ScriptedServer) -> None:
    hook = http_server.script(Reply(200, {"ok": True}))
    name = unique("secret")
    await publish(stack, admin, f"""
name: {name}
stages:
  - name: only
    steps:
      - name: call
        action: http
        inputs:
          url: "{hook}?key=${{secrets.E2E_TOKEN}}"
          headers: {{Authorization: "Bearer ${{secrets.E2E_TOKEN}}"}}
          outputs: {{served: "response.headers['x-served-by']"}}
      - name: missing
        action: http
        optional: true
        inputs: {{url: "{hook}", headers: {{X-Api-Key: "${{secrets.NOT_THERE}}"}}}}
""")
    run_id = await start(stack, admin, name)
    run = await wait_run(mongo, run_id)
    assert run["status"] == "completed", run.get("error")
    (call,) = http_server.calls(hook)
    assert call.headers["authorization"] == f"Bearer {E2E_SECRET}"
    assert "unknown secret 'NOT_THERE'" in run["steps"]["missing"]["error"]
    # the value is in none of what Baton keeps or sends: the run, attempts, topics
    kept = [run, *await mongo.step_attempts.find({"run_id": run_id}).to_list(None)]
    for topic in ("steps.dispatch", "steps.outcomes", "runs.events"):
        kept += await read_topic(servers.kafka_bootstrap, topic, run_id=run_id)
    assert E2E_SECRET not in json.dumps(kept, default=str)
    dispatched = await read_topic(servers.kafka_bootstrap, "steps.dispatch", run_id=run_id)
    assert "${secrets.E2E_TOKEN}" in json.dumps(dispatched)
