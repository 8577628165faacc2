"""May an in-flight run move to another version of its orchestration?

The run keeps its place (its current stage, by name) and the work already started or done
in that stage (its steps, by name and kind).  Steps that have not started may come and go:
the target version decides them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.definitions.issues import Issue, listing
from shared.definitions.model import Definition, Stage

NOT_STARTED = frozenset({"pending", "not_started", "skipped"})


def check_migration(
    current: Definition, target: Definition, run_state: Mapping[str, Any]
) -> list[Issue]:
    """Issues that stop the move; empty means the run can move to ``target``.

    ``run_state`` is ``{"stage": "it", "steps": {"laptop": "completed", ...}}``: the stage
    the run is in and the status of that stage's steps.  Any status other than pending,
    not_started or skipped counts as started, so an unknown status errs on the safe side.
    """
    issues: list[Issue] = []
    if current.name != target.name:
        issues.append(Issue("name", f"the run is of '{current.name}', not of '{target.name}'"))
    stage_name = run_state.get("stage")
    if not stage_name:
        return [*issues, Issue("stage", "the run is not in a stage; there is nothing to move")]
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
        before = _step_kind(current_stage, name)
        if before is not None and before != moved_to.kind.value:
            issues.append(
                Issue(
                    f"{at}.kind",
                    f"step '{name}' is {status} as {_a(before)} step in version"
                    f" {current.version}, but version {target.version} makes it"
                    f" {_a(moved_to.kind.value)} step",
                )
            )
    return issues


def _stage(definition: Definition, name: str) -> Stage | None:
    return next((s for s in definition.stages if s.name == name), None)


def _step_kind(stage: Stage | None, name: str) -> str | None:
    if stage is None:
        return None
    return next((s.kind.value for s in stage.steps if s.name == name), None)


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"
