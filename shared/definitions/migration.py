"""May an in-flight run move to another version of its orchestration?

The run keeps its place (its current stage, by name) and the work already started or done
in that stage (its steps, by name, kind and action).  Steps that have not started may come
and go: the target version decides them.  The stage-coordinator refuses a migration with
exactly these issues, so the API and the coordinator give the same reasons.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.definitions.issues import Issue, listing
from shared.definitions.model import Definition, Stage, Step

NOT_STARTED = frozenset({"pending", "not_started", "skipped"})


def check_migration(
    current: Definition, target: Definition, run_state: Mapping[str, Any]
) -> list[Issue]:
    """Issues that stop the move; empty means the run can move to ``target``.

    ``run_state`` is ``{"stage": "it", "steps": {"laptop": "completed", ...}}``: the stage
    the run is in and the status of that stage's steps.  Any status other than pending,
    not_started or skipped counts as started, so an unknown status errs on the safe side.
    A run that is in no stage yet (it went into Error before entering its first one) has
    started nothing, so it may move.
    """
    issues: list[Issue] = []
    if current.name != target.name:
        issues.append(Issue("name", f"the run is of '{current.name}', not of '{target.name}'"))
    if current.version == target.version:
        issues.append(Issue("version", f"the run is on version {target.version} already"))
    stage_name = run_state.get("stage")
    if not stage_name:
        return issues
    target_stage = _stage(target, stage_name)
    if target_stage is None:
        issues.append(
            Issue(
                f"stages({stage_name})",
                f"the run is in stage '{stage_name}', which version {target.version} does not"
                f" have (its stages: {listing(s.name for s in target.stages)})",
            )
        )
        return issues
    index = target.stage_index(stage_name)
    current_stage = _stage(current, stage_name)
    if current_stage is None:
        issues.append(
            Issue(
                f"stages({stage_name})",
                f"the run is in stage '{stage_name}', which its own version {current.version}"
                " does not have; the run state does not match its definition",
            )
        )
    steps: Mapping[str, str] = run_state.get("steps") or {}
    for name, status in steps.items():
        if status in NOT_STARTED:
            continue
        at = f"stages[{index}]({stage_name}).steps({name})"
        moved_to = next((s for s in target_stage.steps if s.name == name), None)
        if moved_to is None:
            issues.append(
                Issue(
                    at,
                    f"step '{name}' is {status} in the run but stage '{stage_name}' of"
                    f" version {target.version} has no such step",
                )
            )
            continue
        before = _step(current_stage, name)
        if before is not None and before.kind != moved_to.kind:
            issues.append(
                Issue(
                    f"{at}.kind",
                    f"step '{name}' is {status} as {_a(before.kind.value)} step in version"
                    f" {current.version}, but version {target.version} makes it"
                    f" {_a(moved_to.kind.value)} step",
                )
            )
        elif before is not None and before.action != moved_to.action:
            # An action in flight cannot change: a wait is the coordinator's timer, any
            # other action runs in the step-runner and reports back.
            issues.append(
                Issue(
                    f"{at}.action",
                    f"step '{name}' is {status} with action '{before.action}' in version"
                    f" {current.version}, but version {target.version} gives it action"
                    f" '{moved_to.action}'",
                )
            )
    return issues


def _stage(definition: Definition, name: str) -> Stage | None:
    return next((s for s in definition.stages if s.name == name), None)


def _step(stage: Stage | None, name: str) -> Step | None:
    if stage is None:
        return None
    return next((s for s in stage.steps if s.name == name), None)


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"
