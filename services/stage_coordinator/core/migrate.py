"""Move an in-flight run to another version of its orchestration, by stage and step name.

Whether a run may move is decided by ``shared.definitions.migration.check_migration``, the
same check the API and publishing use, so a refused migration gives the same reasons
wherever it is refused.  This module only adds what needs the run itself (is it still
active?) and lays the run out as the target version says.
"""

from __future__ import annotations

from typing import Any

from contracts.events import runs as run_events
from services.stage_coordinator.core import events as ev
from services.stage_coordinator.core.state import Run
from services.stage_coordinator.core.transition import InvalidMove, Transition
from shared.definitions import Definition
from shared.definitions.issues import Issue
from shared.definitions.migration import check_migration

REFUSED = "migration refused: "


def migration_state(run: Run) -> dict[str, Any]:
    """The run as ``check_migration`` reads it: its stage and that stage's step statuses."""
    steps = run.steps_of(run.stage) if run.stage else []
    return {"stage": run.stage, "steps": {s.name: s.status.value for s in steps}}


def migration_issues(run: Run, current: Definition, target: Definition) -> list[Issue]:
    """Why ``run`` (on ``current``) cannot move to ``target``; empty when it can."""
    return check_migration(current, target, migration_state(run))


def refusal(issues: list[Issue]) -> str:
    return REFUSED + "; ".join(str(issue) for issue in issues)


def migrate(t: Transition, target: Definition, actor: str) -> None:
    run = t.current
    if not run.active:
        raise InvalidMove(f"a {run.status} run cannot be migrated")
    issues = migration_issues(run, t.definition, target)
    if issues:
        raise InvalidMove(refusal(issues))
    layout = {st.name: (s.name, st.kind.value) for s in target.stages for st in s.steps}
    added = [(stage, name, kind) for name, (stage, kind) in layout.items() if name not in run.steps]
    moved = [
        (stage, name, kind)
        for name, (stage, kind) in layout.items()
        if name in run.steps and (run.steps[name].stage, run.steps[name].kind) != (stage, kind)
    ]
    removed = [name for name in run.steps if name not in layout]
    stage_names = {s.name for s in target.stages}
    from_version = run.version
    t.apply(
        ev.RunMigrated(
            at=t.now,
            actor=actor,
            from_version=from_version,
            to_version=target.version,
            added_steps=added,
            removed_steps=removed,
            moved_steps=moved,
            removed_stages=[name for name in run.stages if name not in stage_names],
        )
    )
    t.send(run_events.RunMigrated(from_version=from_version, **t.run_event_fields()))
