"""decide(run, message, context) -> Transition | Rejection: the coordinator's processor.

It reads the run, checks the transition tables, applies domain events to a private
copy and collects the messages to publish; it performs no I/O and reads no clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

from contracts.envelope import Payload
from contracts.events import commands as cmd
from contracts.events import runs as run_events
from contracts.events.steps import StepCompleted, StepFailed
from services.stage_coordinator.core import events as ev
from services.stage_coordinator.core import participants
from services.stage_coordinator.core.advance import advance, discontinue, discontinue_stage
from services.stage_coordinator.core.dispatch import SET_VARIABLES_ACTION, retry_delay
from services.stage_coordinator.core.migrate import migrate
from services.stage_coordinator.core.state import (
    STEP_ACTIVE,
    Run,
    RunStatus,
    StageStatus,
    StepState,
    StepStatus,
    Timer,
)
from services.stage_coordinator.core.transition import InvalidMove, Rejection, Transition
from shared.definitions import Definition, StepKind


class Context(NamedTuple):
    """What a decision may know besides the run: its id, the time, who asked, definitions.

    A tuple rather than a frozen dataclass: one is built for every message, and a frozen
    dataclass sets each field through ``object.__setattr__``."""

    run_id: str
    now: datetime
    definition: Definition
    actor: str = "system"
    target_definition: Definition | None = None


Handler = Callable[[Transition, Any, Context], None]


def decide(run: Run | None, message: Payload, context: Context) -> Transition | Rejection:
    handler = _HANDLERS.get(type(message))
    if handler is None:
        return Rejection(f"the coordinator does not handle {message.TYPE}")
    if run is None and not isinstance(message, cmd.StartRun):
        return Rejection(f"{message.TYPE} for unknown run {context.run_id}")
    working = run.fork() if run is not None else None
    t = Transition(definition=context.definition, now=context.now, actor=context.actor, run=working)
    try:
        handler(t, message, context)
    except InvalidMove as exc:
        return Rejection(str(exc))
    return t


def _start(t: Transition, message: cmd.StartRun, context: Context) -> None:
    if t.run is not None:
        raise InvalidMove(f"run {context.run_id} exists already")
    definition = context.definition
    inputs = {
        name: spec.default for name, spec in definition.inputs.items() if spec.default is not None
    }
    inputs.update(message.inputs)
    missing = [n for n, s in definition.inputs.items() if s.required and n not in inputs]
    if missing:
        raise InvalidMove(f"missing required inputs: {', '.join(missing)}")
    record = message.record
    t.apply(
        ev.RunCreated(
            at=t.now,
            actor=message.requested_by,
            run_id=context.run_id,
            orchestration=definition.name,
            version=definition.version,
            inputs=inputs,
            record=dict(record.fields) if record else {},
            record_key=f"{record.object_type}:{record.record_id}" if record else None,
            exclusive_per_record=message.at_most_one_active_per_record
            or definition.trigger.at_most_one_active_per_record,
            stages=[s.name for s in definition.stages],
            steps=[(s.name, st.name, st.kind.value) for s in definition.stages for st in s.steps],
        )
    )
    advance(t)
    # First on runs.events, naming the stage the run entered (decision 17): advancing
    # decided which, or that it entered none.
    entered = next((e.stage for e in t.events if isinstance(e, ev.StageEntered)), None)
    t.messages.insert(0, run_events.RunStarted(inputs=inputs, stage=entered,
                                               **t.run_event_fields()))


def _completed(t: Transition, message: StepCompleted, context: Context) -> None:
    step = _expect_attempt(t, message.step, message.attempt)
    t.check_step(step.name, StepStatus.COMPLETED)
    step_def = t.definition.step(step.stage, step.name)
    outputs = dict(message.outputs)
    if step_def.kind is StepKind.APPROVAL:
        outputs.setdefault("decision", message.decision)
        outputs.setdefault("comment", message.comment)
    t.apply(
        ev.StepSucceeded(
            at=t.now,
            actor=message.completed_by,
            step=step.name,
            outputs=outputs,
            decision=message.decision,
            comment=message.comment or None,
            merge_into_vars=step_def.action == SET_VARIABLES_ACTION,
        )
    )
    advance(t)


def _failed(t: Transition, message: StepFailed, context: Context) -> None:
    step = _expect_attempt(t, message.step, message.attempt)
    step_def = t.definition.step(step.stage, step.name)
    if message.retryable and step.attempt < step_def.retries.max_attempts:
        t.check_step(step.name, StepStatus.WAITING_RETRY)
        due = t.now + retry_delay(t, step_def, step.attempt)
        timer = Timer(
            id=f"retry:{step.name}:{step.attempt}", due_at=due, purpose="retry", step=step.name
        )
        t.apply(
            ev.StepRetryScheduled(
                at=t.now, actor=t.actor, step=step.name, error=message.error, timer=timer
            )
        )
        return
    t.check_step(step.name, StepStatus.FAILED)
    t.apply(ev.StepFailed(at=t.now, actor=t.actor, step=step.name, error=message.error))
    advance(t)


def _expect_attempt(t: Transition, name: str, attempt: int) -> StepState:
    run = t.current
    step = run.steps.get(name)
    if step is None:
        raise InvalidMove(f"run has no step {name!r}")
    if step.status is not StepStatus.IN_PROGRESS or step.attempt != attempt:
        raise InvalidMove(
            f"stale outcome for {name!r} attempt {attempt} (step is {step.status},"
            f" attempt {step.attempt})"
        )
    if not run.active:
        raise InvalidMove(f"the run is {run.status}")
    return step


def _timer(t: Transition, message: cmd.TimerFired, context: Context) -> None:
    """Clear the timer; advancing the run then does what it was for (see advance).

    A timer that fires while the run is suspended or in Error is cleared all the same:
    its step catches up when the run is running again.
    """
    timer = next((x for x in t.current.timers if x.id == message.timer_id), None)
    if timer is None:
        raise InvalidMove(f"timer {message.timer_id} is no longer set")
    t.apply(ev.TimerCleared(at=t.now, actor=t.actor, timer_id=timer.id))
    advance(t)


def _cancel(t: Transition, message: cmd.CancelRun, context: Context) -> None:
    run = t.current
    if not run.active:
        raise InvalidMove(f"a {run.status} run cannot be canceled")
    if run.stage and run.stages[run.stage].status is StageStatus.IN_PROGRESS:
        discontinue_stage(t, run.stage, "the run was canceled")
        t.check_stage(run.stage, StageStatus.DISCONTINUED)
        t.apply(ev.StageFinished(at=t.now, actor=t.actor, stage=run.stage, status="discontinued"))
    t.move_run(RunStatus.CANCELED, message.reason)
    t.send(run_events.RunCanceled(reason=message.reason, **t.run_event_fields()))


def _suspend(t: Transition, message: cmd.SuspendRun, context: Context) -> None:
    t.move_run(RunStatus.SUSPENDED, message.reason)
    t.send(run_events.RunSuspended(**t.run_event_fields()))


def _resume(t: Transition, message: cmd.ResumeRun, context: Context) -> None:
    """A suspended run, or one in Error (after a fix, e.g. a migration), runs again."""
    if t.current.status not in (RunStatus.SUSPENDED, RunStatus.ERROR):
        raise InvalidMove(
            f"only a suspended run or one in error can be resumed; this one is {t.current.status}"
        )
    t.move_run(RunStatus.RUNNING, message.reason)
    t.send(run_events.RunResumed(**t.run_event_fields()))
    advance(t)


def _retry(t: Transition, message: cmd.RetryStep, context: Context) -> None:
    """Give a failed step another attempt, or start a step waiting for its retry now."""
    run = t.current
    step = _operated_step(t, message.step)
    if step.status not in (StepStatus.FAILED, StepStatus.WAITING_RETRY):
        raise InvalidMove(f"step {step.name!r} is {step.status}; only a failed step is retried")
    if run.status not in (RunStatus.ERROR, RunStatus.RUNNING):
        raise InvalidMove(f"a {run.status} run cannot retry steps")
    if step.status is StepStatus.WAITING_RETRY:
        for timer in [x for x in run.timers if x.step == step.name]:
            t.apply(ev.TimerCleared(at=t.now, actor=message.requested_by, timer_id=timer.id))
    else:
        t.check_step(step.name, StepStatus.PENDING)
        t.apply(ev.StepReset(at=t.now, actor=message.requested_by, step=step.name))
    if run.status is RunStatus.ERROR:
        t.move_run(RunStatus.RUNNING, f"retry of {step.name} by {message.requested_by}")
    advance(t)


def _skip(t: Transition, message: cmd.SkipStep, context: Context) -> None:
    run = t.current
    step = _operated_step(t, message.step)
    if step.status in STEP_ACTIVE and step.kind != StepKind.BACKGROUND.value:
        discontinue(t, step, f"skipped by {message.requested_by}")
        t.apply(ev.StepReset(at=t.now, actor=message.requested_by, step=step.name))
    t.check_step(step.name, StepStatus.SKIPPED)
    t.apply(
        ev.StepSkipped(
            at=t.now,
            actor=message.requested_by,
            step=step.name,
            reason=message.reason or "skipped by an operator",
            outputs=message.outputs,
        )
    )
    if run.status is RunStatus.ERROR:
        t.move_run(RunStatus.RUNNING, f"skip of {step.name} by {message.requested_by}")
    advance(t)


def _operated_step(t: Transition, name: str) -> StepState:
    """The step an operator names: a step of the current stage of an active run."""
    run = t.current
    if not run.active:
        raise InvalidMove(f"the run is {run.status}")
    step = run.steps.get(name)
    if step is None:
        raise InvalidMove(f"run has no step {name!r}")
    if step.stage != run.stage:
        raise InvalidMove(f"step {step.name!r} is not in the current stage {run.stage!r}")
    return step


def _migrate(t: Transition, message: cmd.MigrateRun, context: Context) -> None:
    target = context.target_definition
    if target is None or target.version != message.to_version:
        raise InvalidMove(f"version {message.to_version} of {t.current.orchestration} is unknown")
    migrate(t, target, message.requested_by)
    t.definition = target
    advance(t)


_HANDLERS: dict[type[Payload], Handler] = {
    cmd.StartRun: _start,
    StepCompleted: _completed,
    StepFailed: _failed,
    cmd.TimerFired: _timer,
    cmd.CancelRun: _cancel,
    cmd.SuspendRun: _suspend,
    cmd.ResumeRun: _resume,
    cmd.RetryStep: _retry,
    cmd.SkipStep: _skip,
    cmd.MigrateRun: _migrate,
    **{event: lambda t, message, _: participants.join(t, message)
       for event in participants.HOLDER_EVENTS},
}
