"""Move an in-flight run to another version of its orchestration, by stage and step name."""

from __future__ import annotations

from contracts.events import runs as run_events
from services.stage_coordinator.core import events as ev
from services.stage_coordinator.core.state import STEP_ACTIVE, StepStatus
from services.stage_coordinator.core.transition import InvalidMove, Transition
from shared.definitions import Definition


def migrate(t: Transition, target: Definition, actor: str) -> None:
    run = t.current
    if not run.active:
        raise InvalidMove(f"a {run.status} run cannot be migrated")
    if target.name != run.orchestration or target.version == run.version:
        raise InvalidMove(f"cannot migrate {run.orchestration} v{run.version} to that version")
    problems = migration_problems(t, target)
    if problems:
        raise InvalidMove("migration refused: " + "; ".join(problems))
    target_steps = {st.name: (s.name, st.kind.value) for s in target.stages for st in s.steps}
    added = [(stage, name, kind) for name, (stage, kind) in target_steps.items() if name not in run.steps]
    removed = [name for name in run.steps if name not in target_steps]
    from_version = run.version
    t.apply(
        ev.RunMigrated(
            at=t.now,
            actor=actor,
            from_version=from_version,
            to_version=target.version,
            added_steps=added,
            removed_steps=removed,
        )
    )
    t.send(run_events.RunMigrated(from_version=from_version, **t.run_event_fields()))


def migration_problems(t: Transition, target: Definition) -> list[str]:
    """Why the run cannot move safely: its stage or a started step has no counterpart."""
    run = t.current
    problems: list[str] = []
    stage_names = {s.name for s in target.stages}
    if run.stage and run.stage not in stage_names:
        problems.append(f"current stage {run.stage!r} does not exist in v{target.version}")
        return problems
    target_steps = {st.name: st for s in target.stages for st in s.steps}
    for step in run.steps.values():
        if step.status is StepStatus.PENDING:
            continue
        counterpart = target_steps.get(step.name)
        if counterpart is None and step.status in STEP_ACTIVE:
            problems.append(f"step {step.name!r} is {step.status} and has no counterpart")
        elif counterpart is not None and counterpart.kind.value != step.kind:
            problems.append(f"step {step.name!r} changes kind ({step.kind} -> {counterpart.kind})")
        elif counterpart is not None and run.stage and step.stage == run.stage:
            if counterpart.name not in {x.name for x in target.stage(run.stage).steps}:
                problems.append(f"step {step.name!r} moves out of the current stage")
    return problems
