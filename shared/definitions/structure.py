"""Cross-reference checks on a parsed definition: names, waits, jumps, step kinds, forms."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from shared.definitions.issues import Issue, listing, stage_path, step_path
from shared.definitions.model import Definition, Stage, Step, StepKind

_PEOPLE_ONLY = ("assignee", "form", "due", "escalation")
REQUIRED_ON_REJECT = "required_on_reject"  # the fields a rejection must fill (approval forms)
VERDICT_OUTPUTS = frozenset({"decision", "comment"})


def check_structure(definition: Definition, known_actions: Collection[str]) -> list[Issue]:
    issues = [*_duplicate_stages(definition), *_duplicate_steps(definition)]
    issues += _jump_targets(definition)
    for i, stage in enumerate(definition.stages):
        issues += _waits(definition, i, stage)
        for j, step in enumerate(stage.steps):
            path = step_path(i, stage, j, step)
            issues += _step_kind(path, step, known_actions)
            issues += _form(path, step)
            issues += _record_assignee(path, step, definition.record_fields)
    return issues


def _duplicate_stages(definition: Definition) -> Iterator[Issue]:
    first: dict[str, int] = {}
    for i, stage in enumerate(definition.stages):
        if stage.name in first:
            yield Issue(
                f"{stage_path(i, stage)}.name",
                f"duplicate stage name '{stage.name}' (also stages[{first[stage.name]}])",
            )
        first.setdefault(stage.name, i)


def _duplicate_steps(definition: Definition) -> Iterator[Issue]:
    first: dict[str, str] = {}
    for i, stage in enumerate(definition.stages):
        for j, step in enumerate(stage.steps):
            path = step_path(i, stage, j, step)
            if step.name in first:
                yield Issue(
                    f"{path}.name",
                    f"duplicate step name '{step.name}' (also {first[step.name]}); step names"
                    " must be unique in the whole definition because conditions say"
                    " steps.<name>",
                )
            first.setdefault(step.name, path)


def _jump_targets(definition: Definition) -> Iterator[Issue]:
    stages = [stage.name for stage in definition.stages]
    for i, stage in enumerate(definition.stages):
        for k, decision in enumerate(stage.decisions):
            if decision.goto and decision.goto not in stages:
                yield Issue(
                    f"{stage_path(i, stage)}.decisions[{k}].goto",
                    f"unknown stage '{decision.goto}' (known: {listing(stages)})",
                )
        if stage.on_fault and stage.on_fault.goto and stage.on_fault.goto not in stages:
            yield Issue(
                f"{stage_path(i, stage)}.on_fault.goto",
                f"unknown stage '{stage.on_fault.goto}' (known: {listing(stages)})",
            )


def _waits(definition: Definition, index: int, stage: Stage) -> list[Issue]:
    owner = {step.name: s.name for s in definition.stages for step in s.steps}
    local = [step.name for step in stage.steps]
    issues: list[Issue] = []
    graph: dict[str, list[str]] = {name: [] for name in local}
    for j, step in enumerate(stage.steps):
        for k, name in enumerate(step.after):
            path = f"{step_path(index, stage, j, step)}.after[{k}]"
            if name == step.name:
                issues.append(Issue(path, f"step '{step.name}' waits for itself"))
            elif name not in owner:
                issues.append(
                    Issue(
                        path,
                        f"unknown step '{name}' (steps in stage '{stage.name}': {listing(local)})",
                    )
                )
            elif owner[name] != stage.name:
                issues.append(
                    Issue(
                        path,
                        f"step '{name}' is in stage '{owner[name]}', not '{stage.name}';"
                        " 'after' can only name steps of the same stage (earlier stages are"
                        " already done when this one starts)",
                    )
                )
            else:
                graph[step.name].append(name)
    for cycle in find_cycles(graph):
        j, k = next(
            (j, k)
            for j, step in enumerate(stage.steps)
            for k, name in enumerate(step.after)
            if step.name == cycle[0] and name == cycle[1]
        )
        issues.append(
            Issue(
                f"{step_path(index, stage, j, stage.steps[j])}.after[{k}]",
                f"steps wait for each other in a cycle: {' -> '.join(cycle)}",
            )
        )
    return issues


def find_cycles(graph: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Cycles of a 'waits for' graph, each as [a, b, ..., a] starting at its least name.

    An iterative depth-first search: every edge back onto the current path closes a cycle.
    """
    state: dict[str, str] = {}
    cycles: dict[tuple[str, ...], list[str]] = {}
    for root in graph:
        if root in state:
            continue
        state[root] = "open"
        path, stack = [root], [iter(graph[root])]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = "done"
                stack.pop()
            elif state.get(nxt) == "open":
                loop = path[path.index(nxt) :]
                start = loop.index(min(loop))
                rotated = loop[start:] + loop[:start]
                cycles.setdefault(tuple(rotated), [*rotated, rotated[0]])
            elif nxt not in state and nxt in graph:
                state[nxt] = "open"
                path.append(nxt)
                stack.append(iter(graph[nxt]))
    return list(cycles.values())


def _step_kind(path: str, step: Step, known_actions: Collection[str]) -> Iterator[Issue]:
    actions = listing(known_actions)
    if step.kind is StepKind.BACKGROUND:
        if not step.action:
            yield Issue(
                f"{path}.action", f"background step '{step.name}' needs an action ({actions})"
            )
        elif step.action not in known_actions:
            yield Issue(f"{path}.action", f"unknown action '{step.action}' (known: {actions})")
        for field in _PEOPLE_ONLY:
            if getattr(step, field) is not None:
                yield Issue(
                    f"{path}.{field}",
                    f"background step '{step.name}' cannot have '{field}'; only interactive"
                    " and approval steps go to people",
                )
        return
    if step.assignee is None:
        yield Issue(
            f"{path}.assignee",
            f"{step.kind.value} step '{step.name}' needs an assignee"
            " (user, group, queue, record_field or manager_of)",
        )
    yield from _deadlines(path, step)


def _deadlines(path: str, step: Step) -> Iterator[Issue]:
    if step.due is None:
        for field in ("reminders_before_due", "reminders_after_due", "escalation"):
            if getattr(step, field):
                yield Issue(f"{path}.{field}", f"'{field}' needs a 'due' on the step")
    escalation = step.escalation
    if escalation and escalation.action == "release_to_group" and not escalation.group:
        yield Issue(f"{path}.escalation.group", "release_to_group needs the group to release to")


def _form(path: str, step: Step) -> Iterator[Issue]:
    if step.form is None:
        return
    try:
        Draft202012Validator.check_schema(step.form)
    except SchemaError as exc:
        where = ".".join(str(part) for part in exc.path)
        at = f" at {where}" if where else ""
        yield Issue(f"{path}.form", f"form is not a valid JSON Schema{at}: {exc.message}")
        return
    if step.form.get("type", "object") != "object":
        yield Issue(
            f"{path}.form.type",
            "a form describes an object (type: object) whose properties become the step's"
            f" outputs, not {step.form.get('type')!r}",
        )
    yield from _approval_form(path, step, step.form)


def _approval_form(path: str, step: Step, form: Mapping[str, Any]) -> Iterator[Issue]:
    """``required_on_reject`` names declared fields; the verdict's own outputs stay its own."""
    declared = form.get("properties")
    properties: Mapping[str, Any] = declared if isinstance(declared, dict) else {}
    on_reject = form.get(REQUIRED_ON_REJECT)
    if on_reject is not None:
        where = f"{path}.form.{REQUIRED_ON_REJECT}"
        if step.kind != StepKind.APPROVAL:
            yield Issue(where, "only an approval step is rejected")
        elif not isinstance(on_reject, list) or not all(isinstance(n, str) for n in on_reject):
            yield Issue(where, "a list of the form's property names")
        else:
            for name in on_reject:
                if name not in properties:
                    known = listing(properties)
                    yield Issue(where, f"unknown form field '{name}' (properties: {known})")
    if step.kind == StepKind.APPROVAL:
        for name in VERDICT_OUTPUTS & set(properties):
            yield Issue(f"{path}.form.properties.{name}",
                        f"'{name}' is the approval's own output; name the form field otherwise")


def _record_assignee(
    path: str, step: Step, record_fields: Mapping[str, str] | None
) -> Iterator[Issue]:
    assignee = step.assignee
    if assignee is None or record_fields is None:
        return
    field = None
    if assignee.record_field:
        field = assignee.record_field.removeprefix("record.")
    elif assignee.manager_of and assignee.manager_of.startswith("record."):
        field = assignee.manager_of.removeprefix("record.")
    if field is not None and field not in record_fields:
        yield Issue(
            f"{path}.assignee.{assignee.kind}",
            f"unknown record field '{field}' (record_fields: {listing(record_fields)})",
        )
