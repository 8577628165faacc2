"""Advance a run until nothing more changes: start steps, finish stages, follow decisions.

Whatever can fail (conditions, the bound on stage entries, and in ``dispatch`` templates
and wait times) is worked out before the events it leads to are applied.  A failure then
puts the run in Error from a consistent state: no step is started without its request,
and no stage is finished without the run having moved on from it.
"""

from __future__ import annotations

from typing import NamedTuple

from contracts.events import runs as run_events
from contracts.events.workitems import WorkItemCancelRequested
from services.stage_coordinator.core import events as ev
from services.stage_coordinator.core.dispatch import is_wait, start_attempt, start_step
from services.stage_coordinator.core.expressions import ExpressionError, holds
from services.stage_coordinator.core.state import (
    STEP_ACTIVE,
    STEP_DONE,
    STEP_SETTLED,
    RunStatus,
    StageStatus,
    StepState,
    StepStatus,
)
from services.stage_coordinator.core.transition import (
    MAX_ADVANCE_ITERATIONS,
    MAX_STAGE_ENTRIES,
    Halt,
    Transition,
)
from shared.definitions import Stage, Step, StepKind

# A step waiting for these will never see them complete: it is skipped.
_DEPENDENCY_LOST = frozenset({StepStatus.FAILED, StepStatus.CANCELED})


class Finished(NamedTuple):
    """The stage a move completed, for the message that says the move (a tuple, built
    cheaply: no ``object.__setattr__`` per field)."""

    stage: str
    duration_seconds: float


class Route(NamedTuple):
    """Where a run goes next: past the ``skipped`` stages into ``enter``, or to its end."""

    skipped: tuple[Stage, ...]
    enter: Stage | None


def advance(t: Transition) -> None:
    for _ in range(MAX_ADVANCE_ITERATIONS):
        if t.current.status is not RunStatus.RUNNING:
            return
        try:
            if not _advance_once(t):
                return
        except ExpressionError as exc:
            _error(t, t.current.stage or "", "", f"expression failed: {exc}")
            return
        except Halt as exc:
            _error(t, t.current.stage or "", exc.step, exc.reason)
            return
    _error(t, t.current.stage or "", "", "the run did not settle; check decisions for a loop")


def _advance_once(t: Transition) -> bool:
    """One move of a running run; False when it has to wait for an outcome or a timer."""
    run = t.current
    if run.stage is None:
        _take(t, _route_from(t, 0))
        return True
    if run.stages[run.stage].status is not StageStatus.IN_PROGRESS:
        return False
    stage_def = t.definition.stage(run.stage)
    steps = run.steps_of(run.stage)
    if _catch_up_timers(t, steps):
        return True
    failed = [s for s in steps if s.status is StepStatus.FAILED and not _optional(t, s)]
    if failed:
        _fault(t, stage_def, failed[0])
        return True
    if holds(stage_def.exit, t.context, default=False):
        _finish_stage(t, stage_def)
        return True
    # Each check above and below returns True once it applied an event: until then the
    # stage's steps are still those read (``steps``), not read again.
    if _start_ready(t, stage_def, steps) or _skip_unmet(t, run.stage, steps):
        return True
    # With or without an exit condition, a stage whose steps are all finished is over:
    # nothing left in it could make the exit condition hold later.
    if all(s.status in STEP_SETTLED for s in steps):
        _finish_stage(t, stage_def)
        return True
    return False


def _catch_up_timers(t: Transition, steps: list[StepState]) -> bool:
    """Do what fired timers were for: a timer that fires while the run is held is cleared.

    A step waiting for a retry starts its next attempt once its timer is gone, and a wait
    step completes, whether the timer fired just now or while the run was suspended or
    in Error.
    """
    timers = t.current.timers
    timed = {timer.step for timer in timers} if timers else ()  # most runs have none
    for step in steps:
        if step.name in timed:
            continue
        if step.status is StepStatus.WAITING_RETRY:
            start_step(t, step.name)
            return True
        if step.status is StepStatus.IN_PROGRESS and is_wait(t, step):
            t.check_step(step.name, StepStatus.COMPLETED)
            t.apply(
                ev.StepSucceeded(
                    at=t.now, actor=t.actor, step=step.name, outputs={"waited_until": str(t.now)}
                )
            )
            return True
    return False


def _start_ready(t: Transition, stage: Stage, steps: list[StepState]) -> bool:
    """Start every pending step whose ``after`` steps are done and whose condition holds.

    A condition that cannot be evaluated yet (it reads an output a running step has not
    produced) counts as not holding here; ``_skip_unmet`` evaluates it strictly once
    nothing in the stage is active.
    """
    progressed = False
    for step in steps:
        if t.current.steps[step.name].status is not StepStatus.PENDING:
            continue
        step_def = t.definition.step(stage.name, step.name)
        deps = [t.current.steps[d].status for d in step_def.after]
        if any(d in _DEPENDENCY_LOST for d in deps):
            _skip(t, step.name, "a step it waits for failed")
            progressed = True
        elif all(d in STEP_DONE for d in deps) and _holds_yet(t, step_def):
            start_attempt(t, stage, step_def, step.attempt + 1)
            progressed = True
    return progressed


def _holds_yet(t: Transition, step: Step) -> bool:
    try:
        return holds(step.when, t.context)
    except ExpressionError:
        return False


def _skip_unmet(t: Transition, stage: str, current: list[StepState]) -> bool:
    """When nothing in the stage is active, skip a ready step whose condition is false.

    While other steps are active their outputs may still make the condition true, so the
    step waits; one step is skipped at a time because a skip may make another one's hold.
    Here the condition is evaluated strictly: if it fails, the run goes into Error.
    ``current``: the stage's steps as they are.
    """
    if any(s.status in STEP_ACTIVE for s in current):
        return False
    for step in current:
        if step.status is not StepStatus.PENDING:
            continue
        step_def = t.definition.step(step.stage, step.name)
        if all(t.current.steps[d].status in STEP_DONE for d in step_def.after):
            if holds(step_def.when, t.context):
                start_attempt(t, t.definition.stage(stage), step_def, step.attempt + 1)
            else:
                _skip(t, step.name, "its condition is false")
            return True
    return False


def _optional(t: Transition, step: StepState) -> bool:
    return t.definition.step(step.stage, step.name).optional


def _route_from(t: Transition, index: int) -> Route:
    """The first stage from ``index`` whose entry condition holds; none: the run completes."""
    skipped: list[Stage] = []
    for stage in t.definition.stages[index:]:
        if holds(stage.entry, t.context):
            return Route(tuple(skipped), stage)
        skipped.append(stage)
    return Route(tuple(skipped), None)


def _route_after(t: Transition, stage: Stage) -> Route:
    """The first decision that holds, else the next stage that may be entered."""
    for decision in stage.decisions:
        if holds(decision.when, t.context, default=False):
            if decision.end:
                return Route((), None)
            return Route((), t.definition.stage(str(decision.goto)))
    return _route_from(t, t.definition.stage_index(stage.name) + 1)


def _check_entries(t: Transition, route: Route) -> None:
    if route.enter is not None and t.current.stage_entries >= MAX_STAGE_ENTRIES:
        raise Halt(f"the run entered stages {MAX_STAGE_ENTRIES} times; is it looping?")


def _take(t: Transition, route: Route, finished: Finished | None = None) -> None:
    """Move the run along ``route``, after ``finished`` (the stage it completed), if any.

    One runs.events message says the move (decision 17): it names what ended and what
    began, so no StageStarted follows a RunStarted or a StageCompleted.
    """
    _check_entries(t, route)
    for stage in route.skipped:
        t.check_stage(stage.name, StageStatus.SKIPPED)
        t.apply(ev.StageSkipped(at=t.now, actor=t.actor, stage=stage.name))
        t.send(run_events.StageSkipped(stage=stage.name, **t.run_event_fields()))
    if route.enter is not None:
        _enter(t, route.enter)
        if finished is not None:
            t.send(run_events.StageCompleted(
                stage=finished.stage, duration_seconds=finished.duration_seconds,
                next_stage=route.enter.name, **t.run_event_fields()))
        elif not t.starting:  # a start's RunStarted names the stage (core/decide.py)
            t.send(run_events.StageStarted(stage=route.enter.name, **t.run_event_fields()))
        return
    run = t.current
    t.move_run(RunStatus.COMPLETED)
    t.send(run_events.RunCompleted(
        duration_seconds=(t.now - run.created_at).total_seconds(),
        stage=finished.stage if finished else None,
        stage_duration_seconds=finished.duration_seconds if finished else 0.0,
        **t.run_event_fields()))


def _enter(t: Transition, stage: Stage) -> None:
    t.check_stage(stage.name, StageStatus.IN_PROGRESS)
    for step in stage.steps:
        if t.current.steps[step.name].status is not StepStatus.PENDING:
            t.check_step(step.name, StepStatus.PENDING)
            t.apply(ev.StepReset(at=t.now, actor=t.actor, step=step.name))
    t.apply(ev.StageEntered(at=t.now, actor=t.actor, stage=stage.name))


def _finish_stage(t: Transition, stage: Stage) -> None:
    discontinue_stage(t, stage.name, "the stage finished")
    route = _route_after(t, stage)
    _check_entries(t, route)
    state = t.current.stages[stage.name]
    t.check_stage(stage.name, StageStatus.COMPLETED)
    t.apply(ev.StageFinished(at=t.now, actor=t.actor, stage=stage.name, status="completed"))
    duration = (t.now - state.started_at).total_seconds() if state.started_at else 0.0
    _take(t, route, Finished(stage.name, duration))


def _fault(t: Transition, stage: Stage, step: StepState) -> None:
    if stage.on_fault and stage.on_fault.goto:
        route = Route((), t.definition.stage(stage.on_fault.goto))
        _check_entries(t, route)
        discontinue_stage(t, stage.name, "the stage took its fault path")
        t.check_stage(stage.name, StageStatus.FAULTED)
        t.apply(ev.StageFinished(at=t.now, actor=t.actor, stage=stage.name, status="faulted"))
        _take(t, route)
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


def discontinue_stage(t: Transition, stage: str, reason: str) -> None:
    """Leave nothing of the stage open: cancel its active steps, skip its pending ones."""
    for step in t.current.steps_of(stage):
        if step.status in STEP_ACTIVE:
            discontinue(t, step, reason)
        elif step.status is StepStatus.PENDING:
            _skip(t, step.name, reason)
