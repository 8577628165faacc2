"""Publish-time validation: the whole definition is checked and every problem reported.

``load_definition`` parses text, ``validate_definition`` turns data into a ``Definition``
or raises ``DefinitionError`` listing every issue with its path, and ``check_migration``
says whether an in-flight run may move to another version.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterator, Mapping
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ValidationError

from shared.definitions import model
from shared.definitions.credentials import (
    check_secret_references,
    credential_warnings,
    strings_in,
)
from shared.definitions.inputs import check_input_specs
from shared.definitions.issues import DefinitionError, Issue, stage_path, step_path
from shared.definitions.limits import BudgetSpent, check_timeouts, within_budget
from shared.definitions.loading import MAX_DEFINITION_BYTES, load_definition
from shared.definitions.migration import check_migration
from shared.definitions.model import Definition, Step
from shared.definitions.references import RUN_ROOTS, TRIGGER_ROOTS, Scope, check_expression
from shared.definitions.structure import check_structure
from shared.expressions import template_expressions

__all__ = [
    "MAX_DEFINITION_BYTES",
    "DefinitionError",
    "Issue",
    "check_migration",
    "definition_warnings",
    "load_definition",
    "validate_definition",
]

SET_VARIABLES = "set_variables"
MAX_ISSUES = 100  # reported at most (each is cheap, but a document can have thousands)
_POSITION = re.compile(r"^stages\[(\d+)\](?:\([^)]*\))?(?:\.steps\[(\d+)\])?")
_NAMED_LISTS = ("stages", "steps")
_FIELDS = sorted(
    {
        field
        for cls in vars(model).values()
        if isinstance(cls, type) and issubclass(cls, BaseModel)
        for field in cls.model_fields
    }
)


def validate_definition(
    data: Mapping[str, Any], *, known_actions: Collection[str],
    longest_step: timedelta | None = None,
) -> Definition:
    """The definition, or a DefinitionError listing every issue found.

    ``longest_step``: the longest timeout a background step may have in this deployment.
    """
    try:
        definition = Definition.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise DefinitionError(
            _at_most([_from_pydantic(error, data) for error in errors[:MAX_ISSUES]], len(errors))
        ) from None
    issues = check_structure(definition, known_actions) + check_expressions(definition)
    issues += check_secret_references(definition) + check_input_specs(definition)
    issues += check_timeouts(definition, longest_step)
    if issues:
        raise DefinitionError(_at_most(sorted(issues, key=_document_order), len(issues)))
    return definition


def _at_most(issues: list[Issue], total: int) -> list[Issue]:
    if total <= MAX_ISSUES:
        return issues
    return [*issues[:MAX_ISSUES], Issue("", f"... and {total - MAX_ISSUES} more issues")]


def definition_warnings(definition: Definition) -> list[Issue]:
    """What may be published but probably should not be (a credential written out)."""
    return credential_warnings(definition)


def check_expressions(definition: Definition) -> list[Issue]:
    """Every expression compiled and checked, within the definition's budget (limits.py)."""
    issues: list[Issue] = []
    try:
        for path, source, (scope, condition) in within_budget(
            (path, source, (scope, condition))
            for path, source, scope, condition in _expressions(definition)
        ):
            issues += check_expression(source, path, scope, condition=condition)
    except BudgetSpent as spent:
        issues.append(spent.issue)
    return issues


def run_scope(definition: Definition) -> Scope:
    """What expressions evaluated during a run may name."""
    steps: dict[str, Step] = {}
    for stage in definition.stages:
        for step in stage.steps:
            steps.setdefault(step.name, step)
    variables = set(definition.inputs)
    for step in steps.values():
        if step.action == SET_VARIABLES:
            variables |= set(step.inputs) | set(step.outputs)
    fields = definition.record_fields
    return Scope(
        roots=RUN_ROOTS,
        steps=steps,
        variables=frozenset(variables),
        record_fields=None if fields is None else frozenset(fields),
    )


def _expressions(definition: Definition) -> Iterator[tuple[str, str, Scope, bool]]:
    """(path, source, scope, is_condition) for every expression in the definition."""
    scope = run_scope(definition)
    record = definition.trigger.record
    if record and record.when:
        yield "trigger.record.when", record.when, _trigger_scope(scope), True
    for i, stage in enumerate(definition.stages):
        at = stage_path(i, stage)
        for field in ("entry", "exit"):
            source = getattr(stage, field)
            if source is not None:
                yield f"{at}.{field}", source, scope, True
        for j, step in enumerate(stage.steps):
            at_step = step_path(i, stage, j, step)
            if step.when is not None:
                yield f"{at_step}.when", step.when, scope, True
            templated = {"title": step.title or "", "inputs": step.inputs}
            for subpath, text in strings_in(templated, at_step):
                for source in template_expressions(text):
                    yield subpath, source, scope, False
        for k, decision in enumerate(stage.decisions):
            yield f"{at}.decisions[{k}].when", decision.when, scope, True


def _document_order(issue: Issue) -> tuple[int, int]:
    """Issues of a stage and its steps together, in the order they appear in the document."""
    match = _POSITION.match(issue.path)
    if not match:
        return (-1, -1)
    return (int(match.group(1)), int(match.group(2)) if match.group(2) else -1)


def _trigger_scope(scope: Scope) -> Scope:
    return Scope(
        roots=TRIGGER_ROOTS, steps={}, variables=frozenset(), record_fields=scope.record_fields
    )


def _from_pydantic(error: Mapping[str, Any], data: Any) -> Issue:
    loc = tuple(error["loc"])
    return Issue(_loc_path(loc, data), _pydantic_message(error, loc))


def _loc_path(loc: tuple[Any, ...], data: Any) -> str:
    """('stages', 1, 'steps', 0, 'name') -> 'stages[1](it).steps[0](laptop).name'."""
    path, node, parent_key = "", data, ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            name = node.get("name") if isinstance(node, dict) else None
            if parent_key in _NAMED_LISTS and isinstance(name, str) and name:
                path += f"({name})"
        else:
            path += f".{part}" if path else str(part)
            node = node.get(part) if isinstance(node, dict) else None
            parent_key = str(part)
    return path


def _pydantic_message(error: Mapping[str, Any], loc: tuple[Any, ...]) -> str:
    kind, message = error["type"], str(error["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden" and loc:
        close = difflib.get_close_matches(str(loc[-1]), _FIELDS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown field '{loc[-1]}'{hint}"
    if kind == "missing":
        return "this field is required"
    if kind == "string_pattern_mismatch" and loc and loc[-1] == "name":
        pattern = str(error.get("ctx", {}).get("pattern", ""))
        allowed = "letters, digits, '_' and '-'" if "-" in pattern else "letters, digits and '_'"
        return (
            f"{_shown(error['input'])} is not a valid name: use lowercase {allowed}, starting"
            " with a letter, at most 63 characters"
        )
    data = error.get("input")
    if kind != "value_error" and isinstance(data, str | int | float | bool) and data is not None:
        return f"{message} (got {_shown(data)})"
    return message


def _shown(value: Any) -> str:
    """A value quoted in a message, cut short: a name can be 200 KiB of hostile text."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:80]}... ({len(text)} characters)"
