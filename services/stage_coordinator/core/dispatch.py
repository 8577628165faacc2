"""Start a step's attempt: its step request, its work item or, for a wait, its timer.

Everything an attempt needs (templates, the wait time) is worked out before the step is
marked started, so a failure leaves the step as it was and the run goes into Error.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from contracts.envelope import Payload
from contracts.events.steps import StepRequested
from contracts.events.workitems import AssigneeSpec, Escalation, WorkItemRequested
from services.stage_coordinator.core import events as ev
from services.stage_coordinator.core import participants
from services.stage_coordinator.core.expressions import ContextOf, render
from services.stage_coordinator.core.state import StepState, StepStatus, Timer
from services.stage_coordinator.core.transition import Halt, Transition
from shared.definitions import Stage, Step, StepKind
from shared.definitions.durations import parse_duration

WAIT_ACTION = "wait"
SET_VARIABLES_ACTION = "set_variables"


def is_wait(t: Transition, step: StepState) -> bool:
    step_def = t.definition.step(step.stage, step.name)
    return step_def.kind is StepKind.BACKGROUND and step_def.action == WAIT_ACTION


def start_step(t: Transition, step_name: str) -> None:
    step = t.current.steps[step_name]
    stage_def = t.definition.stage(step.stage)
    start_attempt(t, stage_def, t.definition.step(step.stage, step_name), step.attempt + 1)


def start_attempt(t: Transition, stage: Stage, step: Step, attempt: int) -> None:
    """Start an attempt: its request (or its wait timer) is built before the step starts."""
    run = t.current
    t.check_step(step.name, StepStatus.IN_PROGRESS)
    context = t.context
    if step.kind is StepKind.BACKGROUND and step.action == WAIT_ACTION:
        timer = _wait_timer(t, step, attempt, render(step.inputs, context))
        t.apply(ev.StepStarted(at=t.now, actor=t.actor, step=step.name, attempt=attempt))
        t.apply(ev.TimerScheduled(at=t.now, actor=t.actor, timer=timer))
        return
    joined: list[str] = []  # whom a work item names that the run does not know yet
    request: Payload
    if step.kind is StepKind.BACKGROUND:
        request = StepRequested(
            orchestration=run.orchestration,
            version=run.version,
            stage=stage.name,
            step=step.name,
            attempt=attempt,
            action=str(step.action),
            inputs=render(step.inputs, context),
            timeout_seconds=step.timeout.total_seconds(),
            idempotency_key=f"{run.id}:{step.name}:{attempt}",
            operation_key=f"{run.id}:{step.name}:visit-{run.stages[stage.name].visits}",
            record_key=run.record_key,
        )
    else:
        request = _work_item_request(t, stage, step, attempt, context)
        named = participants.of_assignee(request.assignee.kind, request.assignee.value,
                                         run.record)
        joined = participants.new_keys(run.participants, named)
    t.apply(ev.StepStarted(at=t.now, actor=t.actor, step=step.name, attempt=attempt,
                           participants=joined))
    t.send(request)


def _work_item_request(
    t: Transition, stage: Stage, step: Step, attempt: int, context: ContextOf
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
        assignee=AssigneeSpec(kind=step.assignee.kind, value=step.assignee.value),
        form=step.form,
        record=run.record,
        context={"vars": run.vars, "inputs": render(step.inputs, context)},
        due_at=due_at,
        started_by=run.started_by,
        reminders_before_due_seconds=[d.total_seconds() for d in step.reminders_before_due],
        reminders_after_due_seconds=[d.total_seconds() for d in step.reminders_after_due],
        escalation=escalation,
    )


def _wait_timer(t: Transition, step: Step, attempt: int, inputs: object) -> Timer:
    """The timer of a wait step: ``until`` a time (UTC unless it says), or for ``duration``."""
    params = inputs if isinstance(inputs, dict) else {}
    try:
        if "until" in params:
            due = datetime.fromisoformat(str(params["until"]))
            due = due if due.tzinfo else due.replace(tzinfo=UTC)
        else:
            due = t.now + parse_duration(params.get("duration", 0))
    except (ValueError, OverflowError) as exc:
        raise Halt(f"cannot tell how long to wait: {exc}", step=step.name) from exc
    return Timer(id=f"wait:{step.name}:{attempt}", due_at=due, purpose="wait", step=step.name)


def retry_delay(t: Transition, step: Step, attempt: int) -> timedelta:
    """Exponential back-off with jitter, never longer than ``max_backoff``.

    The jitter is derived from the run, step and attempt, so a decision is repeatable and
    retries of many runs still spread out.
    """
    longest = step.retries.max_backoff.total_seconds()
    base = min(step.retries.backoff.total_seconds() * (2 ** max(0, attempt - 1)), longest)
    digest = hashlib.sha256(f"{t.current.id}:{step.name}:{attempt}".encode()).digest()
    unit = digest[0] / 255.0 * 2 - 1
    return timedelta(seconds=min(longest, max(0.0, base * (1 + step.retries.jitter * unit))))
