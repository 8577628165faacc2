"""How a run moves: stages in order, parallel steps, `after`, step conditions, entry and exit
conditions, decisions, variables and outputs, fault paths, operator retry / skip / cancel,
suspend / resume, and the history every transition leaves."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from e2e.engine_support import (
    Reply,
    ScriptedServer,
    control,
    entries,
    kinds,
    publish,
    read_topic,
    serve_scripted,
    start,
    unique,
    wait_run,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def http_server() -> Iterator[ScriptedServer]:
    yield from serve_scripted()


def stage_path(doc: dict[str, Any]) -> list[str]:
    return [f"{e['kind']}:{e['stage']}" for e in doc["history"]
            if e["kind"] in ("StageEntered", "StageSkipped", "StageFinished")]


async def test_stages_in_order_parallel_steps_after_and_conditions(
        stack, admin, mongo, servers, http_server: ScriptedServer) -> None:
    left = http_server.script(Reply(body={"n": 7}, delay=0.6))
    right = http_server.script(Reply(body={"n": 3}, delay=0.6))
    join = http_server.script(Reply(body={"total": 10}))
    report = http_server.script(Reply())
    name = unique("flow")
    await publish(stack, admin, f"""
name: {name}
inputs:
  who: {{type: string, default: flow-test}}
  go_second: {{type: boolean, default: false}}
stages:
  - name: first
    steps:
      - name: left
        action: http
        inputs: {{url: "{left}", outputs: {{n: "response.body.n"}}}}
      - name: right
        action: http
        inputs: {{url: "{right}", outputs: {{n: "response.body.n"}}}}
      - name: join
        action: http
        after: [left, right]
        inputs:
          url: "{join}"
          json: {{sum: "${{steps.left.outputs.n + steps.right.outputs.n}}"}}
          outputs: {{total: "response.body.total"}}
      - name: big
        action: noop
        when: "has(steps.left.outputs.n) && steps.left.outputs.n > 5"
        inputs: {{n: "${{steps.left.outputs.n}}"}}
      - name: small
        action: noop
        when: "has(steps.right.outputs.n) && steps.right.outputs.n > 5"
  - name: second
    entry: "vars.go_second"
    steps:
      - {{name: never, action: noop}}
  - name: third
    steps:
      - name: report
        action: http
        when: "steps.big.status == 'completed' && steps.small.status == 'skipped'"
        inputs:
          url: "{report}"
          json:
            total: "${{steps.join.outputs.total}}"
            who: "${{vars.who}}"
            line: "${{vars.who}} saw ${{steps.big.outputs.n}}"
""")
    run_id = await start(stack, admin, name)
    run = await wait_run(mongo, run_id, "completed")

    steps = run["steps"]
    assert {k: v["status"] for k, v in steps.items()} == {
        "left": "completed", "right": "completed", "join": "completed", "big": "completed",
        "small": "skipped", "never": "pending", "report": "completed"}
    assert stage_path(run) == ["StageEntered:first", "StageFinished:first",
                               "StageSkipped:second", "StageEntered:third",
                               "StageFinished:third"]
    assert run["stages"]["second"]["status"] == "skipped"
    # left and right ran at the same time; join only after both; the next stage after that
    (lc,), (rc,), (jc,), (rep,) = (http_server.calls(u) for u in (left, right, join, report))
    assert lc.started < rc.finished and rc.started < lc.finished, "left and right overlap"
    assert jc.started >= max(lc.finished, rc.finished)
    assert rep.started >= jc.finished
    # variables and outputs reach later step inputs and conditions
    assert jc.body == {"sum": 10}
    assert rep.body == {"total": 10, "who": "flow-test", "line": "flow-test saw 7"}
    assert steps["big"]["outputs"] == {"n": 7}
    small = entries(run, "StepSkipped", step="small")[0]
    assert small["reason"] == "its condition is false"
    dispatched = await read_topic(servers.kafka_bootstrap, "steps.dispatch", run_id=run_id)
    assert sorted(m["payload"]["step"] for m in dispatched) == [
        "big", "join", "left", "report", "right"]


async def test_step_condition_on_a_sibling_output_waits_for_it(stack, admin, mongo,
                                                               http_server: ScriptedServer) -> None:
    slow = http_server.script(Reply(body={"ready": True}, delay=0.3))
    name = unique("sibling")
    await publish(stack, admin, f"""
name: {name}
stages:
  - name: only
    steps:
      - name: fetch
        action: http
        inputs: {{url: "{slow}", outputs: {{ready: "response.body.ready"}}}}
      - name: use
        action: noop
        when: "steps.fetch.outputs.ready == true"
""")
    run = await wait_run(mongo, await start(stack, admin, name))
    assert run["status"] == "completed", run.get("error")
    assert run["steps"]["use"]["status"] == "completed"


async def test_exit_condition_decisions_goto_loop_and_end(stack, admin, mongo, servers) -> None:
    name = unique("decide")
    await publish(stack, admin, f"""
name: {name}
inputs:
  count: {{type: integer, default: 0}}
stages:
  - name: count
    steps:
      - name: bump
        action: set_variables
        inputs: {{count: "${{vars.count + 1}}"}}
    decisions:
      - when: "vars.count < 3"
        goto: count
  - name: race
    exit: "steps.quick.status == 'completed'"
    steps:
      - {{name: quick, action: noop}}
      - name: slow
        action: wait
        inputs: {{duration: 30s}}
    decisions:
      - when: "vars.count == 3"
        goto: finish
  - name: skipped_over
    steps:
      - {{name: not_run, action: noop}}
  - name: finish
    steps:
      - {{name: done, action: noop}}
    decisions:
      - end: true
  - name: after_end
    steps:
      - {{name: also_not_run, action: noop}}
""")
    run_id = await start(stack, admin, name)
    run = await wait_run(mongo, run_id, "completed", within=60)
    assert run["vars"]["count"] == 3
    assert run["stages"]["count"]["visits"] == 3
    assert stage_path(run) == [
        "StageEntered:count", "StageFinished:count", "StageEntered:count", "StageFinished:count",
        "StageEntered:count", "StageFinished:count", "StageEntered:race", "StageFinished:race",
        "StageEntered:finish", "StageFinished:finish"]
    assert run["stages"]["skipped_over"]["status"] == "pending"
    assert run["stages"]["after_end"]["status"] == "pending"
    assert run["steps"]["slow"]["status"] == "canceled"
    assert run["steps"]["not_run"]["status"] == run["steps"]["also_not_run"]["status"] == "pending"
    assert run["timers"] == [] and "next_timer_at" not in run
    # the exit condition ended the stage, not the 30s wait: it was canceled, never done
    assert entries(run, "StepSucceeded", step="slow") == []
    assert entries(run, "StepCanceled", step="slow")[0]["reason"] == "the stage finished"
    # One runs.events message per move, naming the stages it left and entered (decision 17).
    lifecycle = [(m["type"], m["payload"].get("stage"), m["payload"].get("next_stage"))
                 for m in await read_topic(servers.kafka_bootstrap, "runs.events",
                                           run_id=run_id)]
    assert lifecycle == [
        ("RunStarted", "count", None), ("StageCompleted", "count", "count"),
        ("StageCompleted", "count", "count"), ("StageCompleted", "count", "race"),
        ("StageCompleted", "race", "finish"), ("RunCompleted", "finish", None)]


async def test_failing_step_takes_the_stage_fault_path(stack, admin, mongo) -> None:
    name = unique("fault-path")
    await publish(stack, admin, f"""
name: {name}
stages:
  - name: work
    on_fault: {{goto: recover}}
    steps:
      - name: bad
        action: flaky
        inputs: {{fail_times: 5}}
        retries: {{max_attempts: 2, backoff: 100ms, jitter: 0}}
      - name: long
        action: wait
        inputs: {{duration: 30s}}
  - name: normal
    steps:
      - {{name: not_run, action: noop}}
    decisions:
      - end: true
  - name: recover
    steps:
      - name: note
        action: set_variables
        inputs: {{recovered_from: "${{steps.bad.status}}"}}
""")
    run = await wait_run(mongo, await start(stack, admin, name), within=60)
    assert run["status"] == "completed", run.get("error")
    assert run["stages"]["work"]["status"] == "faulted"
    assert run["stages"]["normal"]["status"] == "pending"
    assert run["vars"]["recovered_from"] == "failed"
    assert run["steps"]["bad"]["status"] == "failed" and run["steps"]["bad"]["attempt"] == 2
    assert "planned failures" in run["steps"]["bad"]["error"]
    assert run["steps"]["long"]["status"] == "canceled"
    assert len(entries(run, "StepRetryScheduled", step="bad")) == 1
    assert stage_path(run) == ["StageEntered:work", "StageFinished:work",
                               "StageEntered:recover", "StageFinished:recover"]
    assert entries(run, "StageFinished", stage="work")[0]["status"] == "faulted"


OPERATED = """
name: {name}
stages:
  - name: one
    steps:
      - name: shaky
        action: flaky
        inputs: {{fail_times: 1, echo: from-the-action}}
        retries: {{max_attempts: 1}}
  - name: two
    steps:
      - name: use
        action: noop
        inputs: {{got: "${{steps.shaky.outputs.echo}}", by: "${{steps.shaky.completed_by}}"}}
"""


async def test_error_then_operator_retries_skips_or_cancels(stack, admin, mongo,
                                                             servers) -> None:
    name = unique("operated")
    await publish(stack, admin, OPERATED.format(name=name))
    retried, skipped, canceled = [await start(stack, admin, name) for _ in range(3)]
    for run_id in (retried, skipped, canceled):
        run = await wait_run(mongo, run_id, "error")
        assert run["error"].startswith("one.shaky: flaky: attempt 1")
        assert run["steps"]["shaky"]["status"] == "failed"
    errored = [m for m in await read_topic(servers.kafka_bootstrap, "runs.events",
                                           run_id=retried) if m["type"] == "RunErrored"]
    assert errored and errored[0]["payload"]["step"] == "shaky"

    coordinator = stack.url("stage-coordinator")
    async with httpx.AsyncClient(timeout=10) as client:
        no_step = await client.post(f"{coordinator}/runs/{retried}/retry", json={},
                                    headers=admin)
        assert no_step.status_code == 422
        missing = await client.post(f"{coordinator}/runs/nope/cancel", json={}, headers=admin)
        assert missing.status_code == 404
        anonymous = await client.post(f"{coordinator}/runs/{retried}/cancel", json={})
        assert anonymous.status_code == 401

    await control(stack, admin, retried, "retry", step="shaky", reason="the service is back")
    await control(stack, admin, skipped, "skip", step="shaky", outputs={"echo": "by-hand"},
                  reason="done by hand")
    await control(stack, admin, canceled, "cancel", reason="not needed")

    run = await wait_run(mongo, retried, "completed")
    assert run["steps"]["shaky"]["attempt"] == 2
    assert run["steps"]["use"]["outputs"] == {"got": "from-the-action", "by": "system"}
    reset = entries(run, "StepReset", step="shaky")
    assert reset and reset[0]["actor"] == "admin"

    run = await wait_run(mongo, skipped, "completed")
    assert run["steps"]["shaky"]["status"] == "skipped"
    assert run["steps"]["use"]["outputs"] == {"got": "by-hand", "by": "admin"}
    assert entries(run, "StepSkipped", step="shaky")[0]["reason"] == "done by hand"

    run = await wait_run(mongo, canceled, "canceled")
    assert run["error"] == "not needed" and run["steps"]["use"]["status"] == "pending"
    assert run["finished_at"] is not None
    lifecycle = [m["type"] for m in await read_topic(servers.kafka_bootstrap, "runs.events",
                                                      run_id=canceled)]
    assert lifecycle[-1] == "RunCanceled"
    # a canceled run stays canceled
    await control(stack, admin, canceled, "retry", step="shaky")
    await control(stack, admin, retried, "cancel")  # completed: refused, stays completed
    await asyncio.sleep(1.0)
    assert (await wait_run(mongo, canceled, "canceled"))["steps"]["shaky"]["status"] == "failed"
    assert (await wait_run(mongo, retried, "completed"))["status"] == "completed"


async def test_suspend_holds_the_run_and_resume_continues(stack, admin, mongo, servers,
                                                          http_server: ScriptedServer) -> None:
    slow = http_server.script(Reply(body={"v": 1}, delay=1.5))
    after = http_server.script(Reply())
    name = unique("suspend")
    await publish(stack, admin, f"""
name: {name}
stages:
  - name: one
    steps:
      - name: slow
        action: http
        inputs: {{url: "{slow}"}}
  - name: two
    steps:
      - name: after
        action: http
        inputs: {{url: "{after}"}}
""")
    run_id = await start(stack, admin, name)
    await wait_run(mongo, run_id, "running",
                   check=lambda d: d["steps"]["slow"]["status"] == "in_progress")
    await control(stack, admin, run_id, "suspend", reason="hold on")
    # the in-flight step finishes, but nothing new starts while suspended
    held = await wait_run(mongo, run_id, "suspended",
                          check=lambda d: d["steps"]["slow"]["status"] == "completed")
    await asyncio.sleep(0.8)
    held = await wait_run(mongo, run_id, "suspended")
    assert held["steps"]["after"]["status"] == "pending" and held["stage"] == "one"
    assert http_server.calls(after) == []

    await control(stack, admin, run_id, "resume", reason="go on")
    run = await wait_run(mongo, run_id, "completed")
    assert len(http_server.calls(after)) == 1
    statuses = [e["status"] for e in entries(run, "RunStatusChanged")]
    assert statuses == ["suspended", "running", "completed"]
    lifecycle = [m["type"] for m in await read_topic(servers.kafka_bootstrap, "runs.events",
                                                      run_id=run_id)]
    assert "RunSuspended" in lifecycle and "RunResumed" in lifecycle


async def test_a_retry_that_comes_due_while_suspended_waits_for_resume(stack, admin,
                                                                        mongo) -> None:
    name = unique("suspend-retry")
    await publish(stack, admin, f"""
name: {name}
stages:
  - name: one
    steps:
      - name: shaky
        action: flaky
        inputs: {{fail_times: 1, sleep_seconds: 1.5}}
        retries: {{max_attempts: 2, backoff: 300ms, jitter: 0}}
""")
    run_id = await start(stack, admin, name)
    await wait_run(mongo, run_id, "running",
                   check=lambda d: d["steps"]["shaky"]["status"] == "in_progress")
    await control(stack, admin, run_id, "suspend")
    # the attempt fails while the run is suspended, and its retry comes due: nothing starts
    held = await wait_run(mongo, run_id, "suspended",
                          check=lambda d: d["steps"]["shaky"]["status"] == "waiting_retry"
                          and d["timers"] == [])
    assert held["steps"]["shaky"]["attempt"] == 1
    await control(stack, admin, run_id, "resume")
    run = await wait_run(mongo, run_id, "completed")
    assert run["steps"]["shaky"]["attempt"] == 2
    resumed = entries(run, "RunStatusChanged", status="running")[0]["at"]
    assert entries(run, "StepStarted", step="shaky")[1]["at"] >= resumed


async def test_wait_step_that_comes_due_while_suspended_finishes_on_resume(
        stack, admin, mongo) -> None:
    name = unique("suspend-wait")
    await publish(stack, admin, f"""
name: {name}
stages:
  - name: one
    steps:
      - name: pause
        action: wait
        inputs: {{duration: 1.5s}}
""")
    run_id = await start(stack, admin, name)
    await wait_run(mongo, run_id, "running", check=lambda d: d["timers"] != [])
    await control(stack, admin, run_id, "suspend")
    # the wait comes due while suspended: the step does not finish then ...
    held = await wait_run(mongo, run_id, "suspended", check=lambda d: d["timers"] == [])
    assert held["steps"]["pause"]["status"] == "in_progress"
    await control(stack, admin, run_id, "resume")
    # ... but as soon as the run is resumed
    run = await wait_run(mongo, run_id, "completed")
    resumed = entries(run, "RunStatusChanged", status="running")[0]["at"]
    assert entries(run, "StepSucceeded", step="pause")[0]["at"] >= resumed


async def test_history_records_who_what_when_old_and_new(stack, admin, mongo) -> None:
    name = unique("history")
    await publish(stack, admin, OPERATED.format(name=name))
    run_id = await start(stack, admin, name)
    await wait_run(mongo, run_id, "error")
    await control(stack, admin, run_id, "retry", step="shaky", reason="again")
    run = await wait_run(mongo, run_id, "completed")
    history = run["history"]

    for entry in history:
        assert isinstance(entry["at"], datetime) and entry["actor"]
        assert entry["kind"] and entry["cause"] and entry["cause_id"]
        if entry["kind"] not in ("TimerCleared",):
            assert entry["changes"], entry
    times = [e["at"] for e in history]
    assert times == sorted(times)

    def change_of(entry: dict[str, Any], field: str) -> tuple[Any, Any]:
        found = [(c["old"], c["new"]) for c in entry["changes"] if c["field"] == field]
        assert found, (field, entry)
        return found[0]

    created = history[0]
    assert created["kind"] == "RunCreated" and created["actor"] == "admin"
    assert change_of(created, "status") == (None, "running")
    started = entries(run, "StepStarted", step="shaky")
    assert change_of(started[0], "steps.shaky.status") == ("pending", "in_progress")
    assert change_of(started[0], "steps.shaky.attempt") == (0, 1)
    failed = entries(run, "StepFailed", step="shaky")[0]
    assert failed["cause"] == "StepFailed" and failed["actor"] == "system"
    assert change_of(failed, "steps.shaky.status") == ("in_progress", "failed")
    statuses = entries(run, "RunStatusChanged")
    assert [change_of(e, "status") for e in statuses] == [
        ("running", "error"), ("error", "running"), ("running", "completed")]
    back = statuses[1]
    assert back["actor"] == "admin" and back["cause"] == "RetryStep"
    assert change_of(back, "error")[0].startswith("one.shaky")
    reset = entries(run, "StepReset", step="shaky")[0]
    assert change_of(reset, "steps.shaky.status") == ("failed", "pending")
    assert change_of(started[1], "steps.shaky.attempt") == (1, 2)
    entered = entries(run, "StageEntered", stage="two")[0]
    assert change_of(entered, "stage") == ("one", "two")
    assert change_of(entered, "stages.two.status") == ("pending", "in_progress")
    assert kinds(run)[-1] == "RunStatusChanged"

    async with httpx.AsyncClient(timeout=10) as client:
        shown = await client.get(f"{stack.url('stage-coordinator')}/runs/{run_id}",
                                 headers=admin)
    assert shown.status_code == 200
    assert len(shown.json()["history"]) == len(history)
