"""What must hold of a run after any accepted message: the core's invariants, spelled out.

They follow from the transition tables in ``state.py`` and from the rules of the engine:

- every status an event sets is a move its table allows (run, stage, step), and an event
  changes the status of nothing but its own subject;
- a finished run (completed, canceled) has no active step, no timer, no stage in
  progress, and a ``finished_at``;
- at most one stage is in progress, and it is the run's current stage; an active run in
  a stage is in a stage in progress;
- only steps of the current stage are active (in progress or waiting for a retry);
- a completed, faulted or discontinued stage has all its steps finished (completed,
  skipped, failed or canceled), unless a migration added steps to it;
- every timer belongs to a step in the status it was set for (a retry timer to a step
  waiting for its retry, a wait timer to a wait step in progress), timer ids are unique,
  and a running run has a timer for each such step;
- a retry is scheduled only for a step with attempts left;
- a running run is waiting for something: its current stage has an active step;
- ``error`` is set exactly when the run is in Error (or canceled with a reason);
- the run's stages and steps are those of its version, each step in its stage, of its kind;
- ``stage_entries`` counts the visits of the stages and stays within its bound;
- ``revision`` is the length of the history, so it grows with every change, and
  replaying the history rebuilds the run;
- a step's attempts only grow, so idempotency keys and timer ids never repeat;
- a step is dispatched (step request or work item) exactly when it starts, except a
  wait step, which sets a timer instead;
- runs.events says each move once (decision 17): every stage entered is named by one
  RunStarted, StageCompleted (``next_stage``) or StageStarted, every stage completed by
  one StageCompleted or RunCompleted, and a start's RunStarted comes first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from contracts.events import runs as run_events
from contracts.events.steps import StepRequested
from contracts.events.workitems import WorkItemCancelRequested, WorkItemRequested
from services.stage_coordinator.core import events as ev
from services.stage_coordinator.core.evolve import create, evolve
from services.stage_coordinator.core.state import (
    RUN_TRANSITIONS,
    STAGE_TRANSITIONS,
    STEP_ACTIVE,
    STEP_SETTLED,
    STEP_TRANSITIONS,
    Run,
    RunStatus,
    StageStatus,
    StepStatus,
)
from services.stage_coordinator.core.transition import MAX_STAGE_ENTRIES, Transition, audited
from shared.definitions import Definition, StepKind

STAGE_EVENTS = (ev.StageEntered, ev.StageSkipped, ev.StageFinished)
STEP_EVENTS = (
    ev.StepStarted,
    ev.StepSucceeded,
    ev.StepRetryScheduled,
    ev.StepFailed,
    ev.StepSkipped,
    ev.StepCanceled,
    ev.StepReset,
)
FINISHED_STAGE = frozenset({StageStatus.COMPLETED, StageStatus.FAULTED, StageStatus.DISCONTINUED})


def _statuses(run: Run) -> tuple[RunStatus, dict[str, StageStatus], dict[str, StepStatus]]:
    return (
        run.status,
        {name: s.status for name, s in run.stages.items()},
        {name: s.status for name, s in run.steps.items()},
    )


def check_moves(before: Run | None, events: Sequence[ev.RunEvent]) -> Run:
    """Apply ``events`` one by one to a copy of ``before``; every status move is allowed.

    Returns the run they build, so the caller can compare it with the decided one.
    """
    run = before.model_copy(deep=True) if before is not None else None
    for event in events:
        if isinstance(event, ev.RunCreated):
            assert run is None, "RunCreated for a run that exists"
            run = create(event)
            assert all(s is StageStatus.PENDING for s in _statuses(run)[1].values())
            assert all(s is StepStatus.PENDING for s in _statuses(run)[2].values())
            continue
        assert run is not None, f"{type(event).__name__} before RunCreated"
        run_was, stages_were, steps_were = _statuses(run)
        run = evolve(run, event)
        run_is, stages_are, steps_are = _statuses(run)
        if isinstance(event, ev.RunStatusChanged):
            assert run_is in RUN_TRANSITIONS[run_was], f"run {run_was} -> {run_is}"
        else:
            assert run_is is run_was, f"{type(event).__name__} changed the run's status"
        kind = type(event).__name__
        for name, stage_was in stages_were.items():
            if name not in stages_are:
                assert isinstance(event, ev.RunMigrated), f"{kind} removed stage {name}"
            elif isinstance(event, STAGE_EVENTS) and event.stage == name:
                assert stages_are[name] in STAGE_TRANSITIONS[stage_was], (
                    f"stage {name}: {stage_was} -> {stages_are[name]}"
                )
            else:
                assert stages_are[name] is stage_was, f"{kind} changed stage {name}"
        for name, step_was in steps_were.items():
            if name not in steps_are:
                assert isinstance(event, ev.RunMigrated), f"{kind} removed step {name}"
            elif isinstance(event, STEP_EVENTS) and event.step == name:
                assert steps_are[name] in STEP_TRANSITIONS[step_was], (
                    f"step {name}: {step_was} -> {steps_are[name]} by {kind}"
                )
            else:
                assert steps_are[name] is step_was, f"{kind} changed step {name}"
        for name in steps_are.keys() - steps_were.keys():
            assert isinstance(event, ev.RunMigrated), f"{kind} added step {name}"
            assert steps_are[name] is StepStatus.PENDING
    assert run is not None
    return run


def check_transition(before: Run | None, t: Transition, versions: Mapping[int, Definition]) -> None:
    """An accepted message: allowed moves only, a bigger revision, requests match starts."""
    assert t.events, "an accepted message changes the run"
    assert t.changes == replayed_changes(before, t.events), "the audit differs from a replay"
    rebuilt = check_moves(before, t.events)
    assert rebuilt.model_dump() == t.current.model_dump(), "events do not rebuild the run"
    for event in t.events:  # the history entry's fields: the event's dump, in its order
        assert list(ev.fields_of(event).items()) == list(event.model_dump().items())
    if before is not None:
        assert t.current.revision == before.revision + len(t.events)
    started = {
        (e.step, e.attempt)
        for e in t.events
        if isinstance(e, ev.StepStarted) and not _is_wait(t.current, e.step, versions)
    }
    requested = {
        (m.step, m.attempt) for m in t.messages if isinstance(m, StepRequested | WorkItemRequested)
    }
    assert started == requested, f"started {started} but dispatched {requested}"
    definition = versions[t.current.version]
    for event in t.events:
        if isinstance(event, ev.StepRetryScheduled):
            step = t.current.steps[event.step]
            limit = definition.step(step.stage, step.name).retries.max_attempts
            assert step.attempt < limit, f"{step.name} retried after {step.attempt}/{limit}"
    withdrawn = {m.step for m in t.messages if isinstance(m, WorkItemCancelRequested)}
    canceled = {
        e.step
        for e in t.events
        if isinstance(e, ev.StepCanceled) and t.current.steps[e.step].kind != "background"
    }
    assert withdrawn == canceled, f"canceled {canceled} but withdrew {withdrawn}"
    check_lifecycle(t)


def check_lifecycle(t: Transition) -> None:
    """One runs.events message per move: the one that says what ended names what began."""
    lifecycle = [m for m in t.messages if isinstance(m, run_events.RunEvent)]
    starts = [m for m in lifecycle if isinstance(m, run_events.RunStarted)]
    if t.starting:
        assert starts and t.messages[0] is starts[0], "a start says so first"
        assert not any(isinstance(m, run_events.StageStarted) for m in lifecycle)
    assert len(starts) == int(t.starting), f"{len(starts)} RunStarted"
    entered = [e.stage for e in t.events if isinstance(e, ev.StageEntered)]
    named = []
    for m in lifecycle:
        if isinstance(m, run_events.RunStarted | run_events.StageStarted) and m.stage:
            named.append(m.stage)
        elif isinstance(m, run_events.StageCompleted):
            assert m.next_stage, f"StageCompleted {m.stage} names no next stage"
            named.append(m.next_stage)
    assert named == entered, f"entered {entered} but runs.events names {named}"
    completed = [e.stage for e in t.events
                 if isinstance(e, ev.StageFinished) and e.status == "completed"]
    said = [m.stage for m in lifecycle
            if isinstance(m, run_events.StageCompleted | run_events.RunCompleted) and m.stage]
    assert said == completed, f"completed {completed} but runs.events says {said}"


def replayed_changes(before: Run | None, events: Sequence[ev.RunEvent]
                     ) -> list[list[dict[str, object]]]:
    """What each event changed, by replaying the events on a deep copy of the run."""
    run = before.model_copy(deep=True) if before is not None else None
    changes = []
    for event in events:
        old = audited(run)
        run = create(event) if isinstance(event, ev.RunCreated) else evolve(run, event)  # type: ignore[arg-type]
        new = audited(run)
        changes.append([{"field": key, "old": old.get(key), "new": new.get(key)}
                        for key in {**old, **new} if old.get(key) != new.get(key)])
    return changes


def _is_wait(run: Run, step: str, versions: Mapping[int, Definition]) -> bool:
    state = run.steps[step]
    step_def = versions[run.version].step(state.stage, step)
    return step_def.kind is StepKind.BACKGROUND and step_def.action == "wait"


def check_history(history: Sequence[ev.RunEvent], run: Run) -> None:
    """Revision counts the events; a step's attempts never repeat."""
    assert run.revision == len(history)
    last: dict[str, int] = {}
    for event in history:
        if isinstance(event, ev.StepStarted):
            assert event.attempt > last.get(event.step, 0), f"{event.step} repeats an attempt"
            last[event.step] = event.attempt


def check_run(run: Run, versions: Mapping[int, Definition], history: Sequence[ev.RunEvent]) -> None:
    """The state invariants listed in the module docstring."""
    definition = versions[run.version]
    migrated = any(isinstance(e, ev.RunMigrated) for e in history)
    layout = {st.name: (s.name, st.kind.value) for s in definition.stages for st in s.steps}
    assert {n: (s.stage, s.kind) for n, s in run.steps.items()} == layout
    assert set(run.stages) == {s.name for s in definition.stages}

    active = [s for s in run.steps.values() if s.status in STEP_ACTIVE]
    in_progress = [n for n, s in run.stages.items() if s.status is StageStatus.IN_PROGRESS]
    assert len(in_progress) <= 1, f"stages in progress: {in_progress}"
    assert all(s.stage == run.stage for s in active), "an active step outside the stage"
    if in_progress:
        assert in_progress == [run.stage]

    if run.active:
        assert run.finished_at is None
        if run.stage is not None:
            assert run.stages[run.stage].status is StageStatus.IN_PROGRESS
    else:
        assert run.finished_at is not None
        assert not active, f"a {run.status} run has active steps"
        assert not run.timers, f"a {run.status} run has timers"
        assert not in_progress, f"a {run.status} run has a stage in progress"

    for name, stage in run.stages.items():
        if stage.status in FINISHED_STAGE and not migrated:
            unsettled = [s.name for s in run.steps_of(name) if s.status not in STEP_SETTLED]
            assert not unsettled, f"{stage.status} stage {name} has unfinished {unsettled}"

    ids = [t.id for t in run.timers]
    assert len(ids) == len(set(ids)), "timer ids repeat"
    timed = [t.step for t in run.timers]
    assert len(timed) == len(set(timed)), "a step has two timers"
    for timer in run.timers:
        assert timer.step in run.steps, f"timer {timer.id} of no step"
        step = run.steps[timer.step]
        if timer.purpose == "retry":
            assert step.status is StepStatus.WAITING_RETRY, f"{timer.id}: step is {step.status}"
        else:
            assert timer.purpose == "wait"
            assert step.status is StepStatus.IN_PROGRESS, f"{timer.id}: step is {step.status}"
            assert _is_wait(run, step.name, versions)

    for step in run.steps.values():
        if step.status is not StepStatus.PENDING:
            assert step.attempt >= 1 or step.status is StepStatus.SKIPPED

    if run.status is RunStatus.RUNNING:
        assert active, "a running run waits for nothing"
        for step in active:
            needs_timer = step.status is StepStatus.WAITING_RETRY or _is_wait(
                run, step.name, versions
            )
            if needs_timer:
                assert step.name in timed, f"{step.name} is {step.status} without a timer"

    if run.status is RunStatus.ERROR:
        assert run.error
    elif run.status is not RunStatus.CANCELED:
        assert run.error is None

    assert run.stage_entries == sum(s.visits for s in run.stages.values()) or migrated
    assert run.stage_entries <= MAX_STAGE_ENTRIES
