"""Advance a run until nothing more changes: start steps, finish stages, follow decisions."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from contracts.events import runs as run_events
from contracts.events.steps import StepRequested
from contracts.events.workitems import (
    AssigneeSpec,
    Escalation,
    WorkItemCancelRequested,
    WorkItemRequested,
)
from services.stage_coordinator.core import events as ev
from services.stage_coordinator.core.state import (
    STEP_ACTIVE,
    STEP_DONE,
    RunStatus,
    StageStatus,
    StepState,
    StepStatus,
    Timer,
)
from services.stage_coordinator.core.transition import (
    MAX_ADVANCE_ITERATIONS,
    MAX_STAGE_ENTRIES,
    InvalidMove,
    Transition,
    expression_context,
)
from shared.definitions import Stage, Step, StepKind
from shared.definitions.durations import parse_duration
from shared.expressions import ExpressionError, holds, render

WAIT_ACTION = "wait"
SET_VARIABLES_ACTION = "set_variables"


def advance(t: Transition) -> None:
    for _ in range(MAX_ADVANCE_ITERATIONS):
        if t.current.status is not RunStatus.RUNNING:
            return
        try:
            if not _advance_once(t):
                return
        except ExpressionError as exc:
            stage = t.current.stage or ""
            _error(t, stage, "", f"expression failed: {exc}")
            return
    _error(t, t.current.stage or "", "", "the run did not settle; check decisions for a loop")


def _advance_once(t: Transition) -> bool:
    run = t.current
    if run.stage is None:
        return _enter_from(t, 0)
    stage_def = t.definition.stage(run.stage)
    if run.stages[run.stage].status is not StageStatus.IN_PROGRESS:
        return False
    steps = run.steps_of(run.stage)
    failed = [s for s in steps if s.status is StepStatus.FAILED and not _optional(t, s)]
    if failed:
        _fault(t, stage_def, failed[0])
        return True
    context = expression_context(run)
    if stage_def.exit and holds(stage_def.exit, context, default=False):
        _finish_stage(t, stage_def)
        return True
    progressed = False
    any_active = any(s.status in STEP_ACTIVE for s in steps)
    for step in steps:
        if step.status is not StepStatus.PENDING:
            continue
        step_def = t.definition.step(run.stage, step.name)
        deps = [run.steps[d] for d in step_def.after]
        if any(d.status not in STEP_DONE and d.status is not StepStatus.FAILED for d in deps):
            continue
        if any(d.status is StepStatus.FAILED for d in deps):
            _skip(t, step.name, "a step it waits for failed")
            progressed = True
        elif holds(step_def.when, context):
            _start_step(t, stage_def, step_def, step.attempt + 1)
            progressed = True
            any_active = True
        elif not any_active:
            _skip(t, step.name, "its condition is false")
            progressed = True
    if progressed:
        return True
    if not stage_def.exit and all(s.status in STEP_DONE or _settled_optional(t, s) for s in steps):
        _finish_stage(t, stage_def)
        return True
    return False


def _optional(t: Transition, step: StepState) -> bool:
    return t.definition.step(step.stage, step.name).optional


def _settled_optional(t: Transition, step: StepState) -> bool:
    return step.status is StepStatus.FAILED and _optional(t, step)


def _enter_from(t: Transition, index: int) -> bool:
    """Enter the first stage from ``index`` whose entry condition holds; else complete."""
    stages = t.definition.stages
    while index < len(stages):
        stage = stages[index]
        if holds(stage.entry, expression_context(t.current)):
            _enter(t, stage)
            return True
        t.check_stage(stage.name, StageStatus.SKIPPED)
        t.apply(ev.StageSkipped(at=t.now, actor=t.actor, stage=stage.name))
        t.send(run_events.StageSkipped(stage=stage.name, **t.run_event_fields()))
        index += 1
    run = t.current
    t.move_run(RunStatus.COMPLETED)
    duration = (t.now - run.created_at).total_seconds()
    t.send(run_events.RunCompleted(duration_seconds=duration, **t.run_event_fields()))
    return True


def _enter(t: Transition, stage: Stage) -> None:
    if t.current.stage_entries >= MAX_STAGE_ENTRIES:
        raise InvalidMove(f"the run entered stages {MAX_STAGE_ENTRIES} times; is it looping?")
    t.check_stage(stage.name, StageStatus.IN_PROGRESS)
    for step in stage.steps:
        if t.current.steps[step.name].status is not StepStatus.PENDING:
            t.apply(ev.StepReset(at=t.now, actor=t.actor, step=step.name))
    t.apply(ev.StageEntered(at=t.now, actor=t.actor, stage=stage.name))
    t.send(run_events.StageStarted(stage=stage.name, **t.run_event_fields()))


def _finish_stage(t: Transition, stage: Stage) -> None:
    _discontinue_active(t, stage.name, "the stage finished")
    state = t.current.stages[stage.name]
    t.check_stage(stage.name, StageStatus.COMPLETED)
    t.apply(ev.StageFinished(at=t.now, actor=t.actor, stage=stage.name, status="completed"))
    duration = (t.now - state.started_at).total_seconds() if state.started_at else 0.0
    t.send(
        run_events.StageCompleted(
            stage=stage.name, duration_seconds=duration, **t.run_event_fields()
        )
    )
    context = expression_context(t.current)
    for decision in stage.decisions:
        if holds(decision.when, context, default=False):
            if decision.end:
                _enter_from(t, len(t.definition.stages))
            else:
                _enter(t, t.definition.stage(str(decision.goto)))
            return
    _enter_from(t, t.definition.stage_index(stage.name) + 1)


def _fault(t: Transition, stage: Stage, step: StepState) -> None:
    if stage.on_fault and stage.on_fault.goto:
        _discontinue_active(t, stage.name, "the stage took its fault path")
        t.check_stage(stage.name, StageStatus.FAULTED)
        t.apply(ev.StageFinished(at=t.now, actor=t.actor, stage=stage.name, status="faulted"))
        _enter(t, t.definition.stage(stage.on_fault.goto))
        return
    _error(t, stage.name, step.name, step.error or "failed")


def _error(t: Transition, stage: str, step: str, error: str) -> None:
    t.move_run(RunStatus.ERROR, f"{stage}.{step}: {error}" if step else f"{stage}: {error}")
    t.send(run_events.RunErrored(stage=stage, step=step, error=error, **t.run_event_fields()))


def _skip(t: Transition, step: str, reason: str) -> None:
    t.check_step(step, StepStatus.SKIPPED)
    t.apply(ev.StepSkipped(at=t.now, actor=t.actor, step=step, reason=reason))


def discontinue(t: Transition, step: StepState, reason: str) -> None:
    """Cancel an active step; an open work item is withdrawn."""
    t.check_step(step.name, StepStatus.CANCELED)
    t.apply(ev.StepCanceled(at=t.now, actor=t.actor, step=step.name, reason=reason))
    if step.kind != StepKind.BACKGROUND.value:
        t.send(WorkItemCancelRequested(step=step.name, reason=reason))


def _discontinue_active(t: Transition, stage: str, reason: str) -> None:
    for step in t.current.steps_of(stage):
        if step.status in STEP_ACTIVE:
            discontinue(t, step, reason)
        elif step.status is StepStatus.PENDING:
            _skip(t, step.name, reason)


def start_step(t: Transition, step_name: str) -> None:
    run = t.current
    step = run.steps[step_name]
    stage_def = t.definition.stage(step.stage)
    _start_step(t, stage_def, t.definition.step(step.stage, step_name), step.attempt + 1)


def _start_step(t: Transition, stage: Stage, step: Step, attempt: int) -> None:
    run = t.current
    t.check_step(step.name, StepStatus.IN_PROGRESS)
    context = expression_context(run)
    t.apply(ev.StepStarted(at=t.now, actor=t.actor, step=step.name, attempt=attempt))
    if step.kind is StepKind.BACKGROUND and step.action == WAIT_ACTION:
        _schedule_wait(t, step, render(step.inputs, context))
        return
    if step.kind is StepKind.BACKGROUND:
        t.send(
            StepRequested(
                orchestration=run.orchestration,
                version=run.version,
                stage=stage.name,
                step=step.name,
                attempt=attempt,
                action=str(step.action),
                inputs=render(step.inputs, context),
                timeout_seconds=step.timeout.total_seconds(),
                idempotency_key=f"{run.id}:{step.name}:{attempt}",
            )
        )
        return
    t.send(_work_item_request(t, stage, step, attempt, context))


def _work_item_request(
    t: Transition, stage: Stage, step: Step, attempt: int, context: dict[str, object]
) -> WorkItemRequested:
    run = t.current
    assert step.assignee is not None  # publish-time validation guarantees it
    due_at = t.now + step.due if step.due else None
    escalation = None
    if step.escalation:
        escalation = Escalation(
            after_due_seconds=step.escalation.after_due.total_seconds(),
            action=step.escalation.action,
            group=step.escalation.group,
        )
    return WorkItemRequested(
        orchestration=run.orchestration,
        version=run.version,
        stage=stage.name,
        step=step.name,
        attempt=attempt,
        kind="approval" if step.kind is StepKind.APPROVAL else "interactive",
        title=str(render(step.title, context)) if step.title else step.name.replace("_", " "),
        assignee=AssigneeSpec(kind=step.assignee.kind, value=step.assignee.value),  # type: ignore[arg-type]
        form=step.form,
        record=run.record,
        context={"vars": run.vars, "inputs": render(step.inputs, context)},
        due_at=due_at,
        reminders_before_due_seconds=[d.total_seconds() for d in step.reminders_before_due],
        reminders_after_due_seconds=[d.total_seconds() for d in step.reminders_after_due],
        escalation=escalation,
    )


def _schedule_wait(t: Transition, step: Step, inputs: object) -> None:
    params = inputs if isinstance(inputs, dict) else {}
    if "until" in params:
        due = datetime.fromisoformat(str(params["until"]))
    else:
        due = t.now + parse_duration(params.get("duration", 0))
    timer = Timer(id=_timer_id(t, step.name, "wait"), due_at=due, purpose="wait", step=step.name)
    t.apply(ev.TimerScheduled(at=t.now, actor=t.actor, timer=timer))


def retry_delay(t: Transition, step: Step, attempt: int) -> timedelta:
    """Exponential back-off with jitter; the jitter is derived, so decisions are repeatable."""
    base = step.retries.backoff.total_seconds() * (2 ** max(0, attempt - 1))
    capped = min(base, step.retries.max_backoff.total_seconds())
    digest = hashlib.sha256(f"{t.current.id}:{step.name}:{attempt}".encode()).digest()
    unit = digest[0] / 255.0 * 2 - 1
    return timedelta(seconds=max(0.0, capped * (1 + step.retries.jitter * unit)))


def _timer_id(t: Transition, step: str, purpose: str) -> str:
    return f"{purpose}:{step}:{t.current.steps[step].attempt}"
