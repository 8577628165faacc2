"""Given/when/then tests of the coordinator core on small definitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import yaml

from contracts.events import commands as cmd
from contracts.events import runs as run_events
from contracts.events.steps import StepCompleted, StepFailed, StepRequested
from contracts.events.workitems import WorkItemCancelRequested, WorkItemRequested
from services.stage_coordinator.core.decide import Context, decide
from services.stage_coordinator.core.evolve import replay
from services.stage_coordinator.core.state import Run, RunStatus, StageStatus, StepStatus
from services.stage_coordinator.core.transition import Rejection, Transition
from shared.definitions import Definition

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def definition(text: str, version: int = 1) -> Definition:
    data = yaml.safe_load(text)
    data["version"] = version
    return Definition.model_validate(data)


HELLO = definition(
    """
name: hello
stages:
  - name: only
    steps:
      - {name: greet, action: noop}
"""
)

TWO_STAGES = definition(
    """
name: onboarding
inputs: {desk: {type: boolean, default: true}}
stages:
  - name: hr
    steps:
      - name: hr_form
        kind: interactive
        assignee: {queue: hr}
  - name: provision
    steps:
      - {name: laptop, action: noop}
      - {name: desk, action: noop, when: "vars.desk == true"}
      - {name: badge, action: noop, after: [laptop]}
  - name: approve
    entry: "record.needs_approval == true"
    steps:
      - name: ok
        kind: approval
        assignee: {manager_of: record.employee}
    decisions:
      - {when: "steps.ok.decision == 'rejected'", goto: hr}
  - name: done
    steps:
      - {name: welcome, action: noop, retries: {max_attempts: 2, backoff: 1s}}
"""
)


def when(run: Run | None, message: object, d: Definition = HELLO, **kw: object) -> Transition:
    result = decide(run, message, Context(run_id="r1", now=kw.pop("now", T0), definition=d))  # type: ignore[arg-type]
    assert isinstance(result, Transition), result
    return result


def sent(t: Transition, kind: type) -> list:
    return [m for m in t.messages if isinstance(m, kind)]


def test_hello_run_dispatches_its_step_then_completes() -> None:
    started = when(None, cmd.StartRun(orchestration="hello"))
    [request] = sent(started, StepRequested)
    assert (request.step, request.attempt, request.action) == ("greet", 1, "noop")
    assert started.current.status is RunStatus.RUNNING
    assert started.current.stages["only"].status is StageStatus.IN_PROGRESS

    done = when(started.current, StepCompleted(step="greet", attempt=1, outputs={"hi": 1}))
    assert done.current.status is RunStatus.COMPLETED
    assert sent(done, run_events.RunCompleted)
    assert done.current.steps["greet"].outputs == {"hi": 1}


def test_duplicate_outcome_is_rejected_not_applied_twice() -> None:
    started = when(None, cmd.StartRun(orchestration="hello"))
    done = when(started.current, StepCompleted(step="greet", attempt=1))
    again = decide(done.current, StepCompleted(step="greet", attempt=1), Context("r1", T0, HELLO))
    assert isinstance(again, Rejection)


def test_parallel_steps_dependencies_conditions_and_decision_route_back() -> None:
    fields = {"needs_approval": True, "employee": "ann"}
    record = cmd.RecordRef(object_type="Employee", record_id="7", fields=fields)
    run = when(None, cmd.StartRun(orchestration="onboarding", record=record), TWO_STAGES).current
    t = when(run, StepCompleted(step="hr_form", attempt=1, outputs={"start": "monday"}), TWO_STAGES)
    assert {r.step for r in sent(t, StepRequested)} == {"laptop", "desk"}  # badge waits for laptop
    t = when(t.current, StepCompleted(step="laptop", attempt=1), TWO_STAGES)
    assert [r.step for r in sent(t, StepRequested)] == ["badge"]
    t = when(t.current, StepCompleted(step="desk", attempt=1), TWO_STAGES)
    t = when(t.current, StepCompleted(step="badge", attempt=1), TWO_STAGES)
    [approval] = sent(t, WorkItemRequested)
    assert approval.kind == "approval" and approval.assignee.kind == "manager_of"
    t = when(t.current, StepCompleted(step="ok", attempt=1, decision="rejected"), TWO_STAGES)
    [back] = sent(t, WorkItemRequested)
    assert (back.step, back.attempt) == ("hr_form", 2)
    assert t.current.stage == "hr"


def test_retry_then_error_then_operator_skip_finishes() -> None:
    d = TWO_STAGES
    record = cmd.RecordRef(object_type="E", record_id="1", fields={"needs_approval": False})
    run = when(None, cmd.StartRun(orchestration="onboarding", record=record), d).current
    run = when(run, StepCompleted(step="hr_form", attempt=1), d).current
    for name in ("laptop", "desk"):
        run = when(run, StepCompleted(step=name, attempt=1), d).current
    run = when(run, StepCompleted(step="badge", attempt=1), d).current
    assert run.stages["approve"].status is StageStatus.SKIPPED
    t = when(run, StepFailed(step="welcome", attempt=1, error="smtp down"), d)
    [timer] = t.current.timers
    assert t.current.steps["welcome"].status is StepStatus.WAITING_RETRY
    assert T0 + timedelta(seconds=0.7) <= timer.due_at <= T0 + timedelta(seconds=1.3)
    t = when(t.current, cmd.TimerFired(timer_id=timer.id, purpose="retry", step="welcome"), d)
    assert sent(t, StepRequested)[0].attempt == 2
    t = when(t.current, StepFailed(step="welcome", attempt=2, error="smtp down"), d)
    assert t.current.status is RunStatus.ERROR
    t = when(t.current, cmd.SkipStep(step="welcome", requested_by="ops"), d)
    assert t.current.status is RunStatus.COMPLETED


def test_cancel_withdraws_open_work_items_and_history_replays_to_state() -> None:
    d = TWO_STAGES
    t1 = when(None, cmd.StartRun(orchestration="onboarding"), d)
    t2 = when(t1.current, cmd.CancelRun(reason="hired elsewhere"), d)
    assert [m.step for m in sent(t2, WorkItemCancelRequested)] == ["hr_form"]
    assert t2.current.status is RunStatus.CANCELED
    rebuilt = replay([*t1.events, *t2.events])
    assert rebuilt.model_dump() == t2.current.model_dump()
