"""evolve(run, event): the only code that changes a run's state.

Appliers trust the decider: it checked the transition tables before emitting.  They
mutate the run they are given (the shell hands them a private copy, ``Run.fork``) and
return it.  The stage and step states in it are shared with the run it was forked from:
an applier replaces one with a changed copy (``_stage``, ``_step``), never changes it.

Two rules hold for every event, so that replaying a history rebuilds the stored state:
``revision`` counts the events applied, and a step's timers live only as long as the
step status they were set for (any change of the step's status drops them).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from functools import singledispatch
from typing import Any

from services.stage_coordinator.core import events as ev
from services.stage_coordinator.core.state import (
    Run,
    RunStatus,
    StageState,
    StageStatus,
    StepState,
    StepStatus,
    copied,
)


def create(event: ev.RunCreated) -> Run:
    return Run(
        id=event.run_id,
        orchestration=event.orchestration,
        version=event.version,
        record=event.record,
        record_key=event.record_key,
        exclusive_per_record=event.exclusive_per_record,
        inputs=event.inputs,
        vars=dict(event.inputs),
        stages={name: StageState(name=name) for name in event.stages},
        steps={
            name: StepState(name=name, stage=stage, kind=kind) for stage, name, kind in event.steps
        },
        started_by=event.actor,
        participants=[f"user:{event.actor}"] if event.actor != "system" else [],
        created_at=event.at,
        updated_at=event.at,
        revision=1,
    )


def replay(history: Iterable[ev.RunEvent]) -> Run:
    items = iter(history)
    first = next(items)
    if not isinstance(first, ev.RunCreated):
        raise ValueError("a run's history starts with RunCreated")
    run = create(first)
    for event in items:
        run = evolve(run, event)
    return run


def evolve(run: Run, event: ev.RunEvent) -> Run:
    # The applier of the event's own type, looked up directly: singledispatch's own lookup
    # costs more than most appliers (one per event applied).  Any other type goes through
    # it (a subclass of an event, or no applier: a TypeError).
    applier = _APPLIERS.get(type(event))
    if applier is None:
        _apply(event, run)
    else:
        applier(event, run)
    # Set as pydantic's __setattr__ sets a field (the value, and the name among those set),
    # without its two calls: twice for every event applied.
    fields = run.__dict__
    if event.at > fields["updated_at"]:
        fields["updated_at"] = event.at
        run.__pydantic_fields_set__.add("updated_at")
    fields["revision"] += 1
    run.__pydantic_fields_set__.add("revision")
    return run


@singledispatch
def _apply(event: ev.RunEvent, run: Run) -> None:
    raise TypeError(f"no applier for {type(event).__name__}")


_APPLIERS: dict[type[ev.RunEvent], Callable[[Any, Run], None]] = {}


def _on(cls: type[ev.RunEvent]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def register(applier: Callable[..., None]) -> Callable[..., None]:
        _APPLIERS[cls] = applier
        return _apply.register(cls)(applier)
    return register


def _stage(run: Run, name: str, **changes: Any) -> None:
    """Put a changed copy of the stage in the run (forks share the stage they hold)."""
    run.stages[name] = copied(run.stages[name], changes)


def _step(run: Run, name: str, **changes: Any) -> None:
    """Put a changed copy of the step in the run (forks share the step they hold)."""
    run.steps[name] = copied(run.steps[name], changes)


def _drop_timers(run: Run, step: str) -> None:
    """A timer is set for one status of one step; when that status ends, so does the timer."""
    if run.timers:  # most runs have none: nothing to copy
        run.timers = [t for t in run.timers if t.step != step]


def _join(run: Run, keys: Collection[str]) -> None:
    if keys:
        run.participants.extend(k for k in dict.fromkeys(keys) if k not in run.participants)


@_on(ev.ParticipantsJoined)
def _participants_joined(event: ev.ParticipantsJoined, run: Run) -> None:
    _join(run, event.participants)


@_on(ev.StageEntered)
def _stage_entered(event: ev.StageEntered, run: Run) -> None:
    visits = run.stages[event.stage].visits + 1
    _stage(run, event.stage, status=StageStatus.IN_PROGRESS, started_at=event.at,
           finished_at=None, visits=visits)
    run.stage = event.stage
    run.stage_entries += 1


@_on(ev.StageSkipped)
def _stage_skipped(event: ev.StageSkipped, run: Run) -> None:
    _stage(run, event.stage, status=StageStatus.SKIPPED, finished_at=event.at)


@_on(ev.StageFinished)
def _stage_finished(event: ev.StageFinished, run: Run) -> None:
    _stage(run, event.stage, status=StageStatus(event.status), finished_at=event.at)


@_on(ev.StepStarted)
def _step_started(event: ev.StepStarted, run: Run) -> None:
    _step(run, event.step, status=StepStatus.IN_PROGRESS, attempt=event.attempt,
          started_at=event.at, finished_at=None, error=None)
    _join(run, event.participants)
    _drop_timers(run, event.step)


@_on(ev.StepSucceeded)
def _step_succeeded(event: ev.StepSucceeded, run: Run) -> None:
    _step(run, event.step, status=StepStatus.COMPLETED, finished_at=event.at,
          outputs=event.outputs, completed_by=event.actor, decision=event.decision,
          comment=event.comment)
    if event.actor != "system":
        _join(run, [f"user:{event.actor}"])
    if event.merge_into_vars:
        run.vars.update(event.outputs)
    _drop_timers(run, event.step)


@_on(ev.StepRetryScheduled)
def _step_retry(event: ev.StepRetryScheduled, run: Run) -> None:
    _step(run, event.step, status=StepStatus.WAITING_RETRY, error=event.error)
    _drop_timers(run, event.step)
    run.timers.append(event.timer)


@_on(ev.StepFailed)
def _step_failed(event: ev.StepFailed, run: Run) -> None:
    _step(run, event.step, status=StepStatus.FAILED, error=event.error, finished_at=event.at)
    _drop_timers(run, event.step)


@_on(ev.StepSkipped)
def _step_skipped(event: ev.StepSkipped, run: Run) -> None:
    _step(run, event.step, status=StepStatus.SKIPPED, finished_at=event.at,
          outputs=event.outputs, error=None, completed_by=event.actor)
    _drop_timers(run, event.step)


@_on(ev.StepCanceled)
def _step_canceled(event: ev.StepCanceled, run: Run) -> None:
    _step(run, event.step, status=StepStatus.CANCELED, finished_at=event.at)
    _drop_timers(run, event.step)


@_on(ev.StepReset)
def _step_reset(event: ev.StepReset, run: Run) -> None:
    old = run.steps[event.step]
    run.steps[event.step] = StepState(
        name=old.name, stage=old.stage, kind=old.kind, attempt=old.attempt
    )
    _drop_timers(run, event.step)


@_on(ev.TimerScheduled)
def _timer_scheduled(event: ev.TimerScheduled, run: Run) -> None:
    run.timers.append(event.timer)


@_on(ev.TimerCleared)
def _timer_cleared(event: ev.TimerCleared, run: Run) -> None:
    run.timers = [t for t in run.timers if t.id != event.timer_id]


@_on(ev.RunStatusChanged)
def _run_status(event: ev.RunStatusChanged, run: Run) -> None:
    run.status = event.status
    if event.status is RunStatus.ERROR:
        run.error = event.reason
    elif event.status is RunStatus.RUNNING:
        run.error = None
    if event.status in (RunStatus.COMPLETED, RunStatus.CANCELED):
        run.finished_at = event.at
        run.timers = []
        if event.status is RunStatus.CANCELED:
            run.error = event.reason or None


@_on(ev.RunMigrated)
def _run_migrated(event: ev.RunMigrated, run: Run) -> None:
    run.version = event.to_version
    for name in event.removed_steps:
        removed = run.steps.pop(name, None)
        if removed is not None:
            run.retired_attempts[name] = max(removed.attempt, run.retired_attempts.get(name, 0))
        _drop_timers(run, name)
    for name in event.removed_stages:
        run.stages.pop(name, None)
    for stage, _name, _kind in [*event.added_steps, *event.moved_steps]:
        run.stages.setdefault(stage, StageState(name=stage))
    for stage, name, kind in event.added_steps:
        attempt = run.retired_attempts.pop(name, 0)
        run.steps[name] = StepState(name=name, stage=stage, kind=kind, attempt=attempt)
    for stage, name, kind in event.moved_steps:
        _step(run, name, stage=stage, kind=kind)
