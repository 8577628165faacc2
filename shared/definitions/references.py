"""Publish-time checks of one CEL expression: it compiles and names only what exists.

CEL tells us the top-level names an expression reads (``Program.references()``); for the
paths below them (``steps.hr_form.outputs.start_date``) we look at the source itself, with
string literals blanked out so that text inside quotes is never mistaken for a path.
Where the definition does not say enough to be sure (a step that declares no outputs, a
record without ``record_fields``), the check stays silent rather than wrong.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from shared.definitions.issues import Issue, listing
from shared.definitions.model import Step, StepKind
from shared.expressions import ExpressionError, compile_expression

RUN_ROOTS = frozenset({"record", "vars", "steps", "run"})
TRIGGER_ROOTS = frozenset({"new", "old"})
STEP_FIELDS = ("outputs", "status", "completed_by", "decision", "comment")
APPROVAL_OUTPUTS = ("decision", "comment")

_RAW_BODY = r"""(?:'''[\s\S]*?'''|\"\"\"[\s\S]*?\"\"\"|'[^'\n]*'|"[^"\n]*")"""
_BODY = (
    r"""(?:'''(?:\\[\s\S]|[\s\S])*?'''|\"\"\"(?:\\[\s\S]|[\s\S])*?\"\"\""""
    r"""|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")"""
)
_STRING = re.compile(rf"(?<!\w)(?:[bB]?[rR]|[rR][bB]){_RAW_BODY}|{_BODY}")
_IDENTIFIER = re.compile(r"(?<![\w.])([A-Za-z_]\w*)")
_SEGMENT = re.compile(r"\s*\.\s*([A-Za-z_]\w*)(\s*\()?")
_BINDING = re.compile(
    r"\b(?:all|exists|exists_one|map|filter|bind|transformList|transformMap)\s*\(\s*"
    r"([A-Za-z_]\w*)\s*,(?:\s*([A-Za-z_]\w*)\s*,)?"
)
_CEL_ERROR = re.compile(r"<input>:(\d+):(\d+): (.+)")
_DUNDER = re.compile(r"\.\s*(__\w*__)(?!\w)")
_NAMED = re.compile(r"^[A-Za-z_]\w*$")  # a function by name; operators are '_+_', '@in'...
# What the CEL library offers (and the macros): anything else fails on every evaluation
# ("Undefined variable or function"), and names like __import__ or getattr are refused here.
CEL_FUNCTIONS = frozenset({
    "size", "matches", "startsWith", "endsWith", "contains", "int", "uint", "double",
    "string", "bytes", "dyn", "type", "timestamp", "duration", "getFullYear", "getMonth",
    "getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getHours", "getMinutes",
    "getSeconds", "getMilliseconds", "has", "all", "exists", "exists_one", "map", "filter",
    "of", "none", "hasValue", "or", "orValue", "value",
})


@dataclass(frozen=True)
class Scope:
    """What an expression may name: its roots, the steps, the variables, record fields."""

    roots: frozenset[str]
    steps: Mapping[str, Step]
    variables: frozenset[str]
    record_fields: frozenset[str] | None

    @property
    def record_roots(self) -> frozenset[str]:
        return self.roots & {"record", "new", "old"}


def check_expression(source: str, path: str, scope: Scope, *, condition: bool) -> list[Issue]:
    """Every issue with one expression; ``condition`` means it must give true/false."""
    try:
        program = compile_expression(source)
    except ExpressionError as exc:
        return [Issue(path, f"{source!r} does not compile: {_compile_message(str(exc))}")]
    text = strip_strings(source)
    bound = bound_names(text)
    names = set(program.references()["variables"]) - bound
    messages = [
        f"unknown name '{name}' in {source!r} (expressions here may use {listing(scope.roots)})"
        for name in sorted(names - scope.roots)
    ]
    functions = program.references()["functions"]
    messages += [
        f"unknown function '{name}' in {source!r}"
        for name in sorted(functions)
        if _NAMED.match(name) and name not in CEL_FUNCTIONS
    ]
    messages += [
        f"'{name}' in {source!r}: data here has no such field (CEL reaches no Python names)"
        for name in sorted(set(_DUNDER.findall(text)))
    ]
    for member in member_paths(text, scope.roots - bound):
        messages += _member_issues(member, scope)
    if condition and not names:
        messages += _constant_condition(source, program)
    return [Issue(path, message) for message in dict.fromkeys(messages)]


def strip_strings(source: str) -> str:
    """The source with every string literal's contents removed (``"a.b"`` -> ``""``)."""
    return _STRING.sub('""', source)


def bound_names(text: str) -> set[str]:
    """Names bound by comprehension macros (``list.all(x, x > 0)``) and ``cel.bind``."""
    return {name for match in _BINDING.finditer(text) for name in match.groups() if name}


def member_paths(text: str, roots: frozenset[str]) -> Iterator[tuple[str, ...]]:
    """Dotted paths from a root, ``('steps', 'hr_form', 'outputs', 'start_date')``.

    A segment followed by '(' is a method call (``.startsWith(...)``): the path ends before it.
    """
    for match in _IDENTIFIER.finditer(text):
        if match.group(1) not in roots:
            continue
        segments, position = [match.group(1)], match.end()
        while segment := _SEGMENT.match(text, position):
            if segment.group(2):
                break
            segments.append(segment.group(1))
            position = segment.end()
        yield tuple(segments)


def _member_issues(member: tuple[str, ...], scope: Scope) -> list[str]:
    root, rest = member[0], member[1:]
    if not rest:
        return []
    if root == "steps":
        return _step_member(rest, scope.steps)
    if root == "vars" and rest[0] not in scope.variables:
        return [
            f"unknown variable '{rest[0]}' (known: {listing(scope.variables)}); declare it"
            " under inputs or set it with a set_variables step"
        ]
    fields = scope.record_fields
    if root in scope.record_roots and fields is not None and rest[0] not in fields:
        return [
            f"unknown record field '{rest[0]}' in {root}.{rest[0]}"
            f" (record_fields: {listing(fields)})"
        ]
    return []


def _step_member(rest: tuple[str, ...], steps: Mapping[str, Step]) -> list[str]:
    name = rest[0]
    step = steps.get(name)
    if step is None:
        return [f"unknown step '{name}' (known: {listing(steps)})"]
    if len(rest) < 2:
        return []
    if rest[1] not in STEP_FIELDS:
        return [f"steps.{name} has no field '{rest[1]}' (a step has {', '.join(STEP_FIELDS)})"]
    declared = declared_outputs(step)
    if rest[1] == "outputs" and len(rest) > 2 and declared and rest[2] not in declared:
        return [f"step '{name}' has no output '{rest[2]}' (declared: {listing(declared)})"]
    return []


def declared_outputs(step: Step) -> set[str]:
    """What ``steps.<name>.outputs`` holds, or an empty set when the step does not say."""
    declared = set(step.outputs)
    properties = (step.form or {}).get("properties")
    if isinstance(properties, dict):
        declared |= set(properties)
    if declared and step.kind is StepKind.APPROVAL:
        declared |= set(APPROVAL_OUTPUTS)
    return declared


def _constant_condition(source: str, program: Any) -> list[str]:
    """A condition that reads nothing has one value forever: it had better be a bool."""
    try:
        value = program.execute({})
    except Exception as exc:  # cel raises several kinds; all mean "fails"
        return [f"condition {source!r} always fails: {exc}"]
    if isinstance(value, bool):
        return []
    return [f"condition {source!r} is always {value!r}, not true or false"]


def _compile_message(text: str) -> str:
    match = _CEL_ERROR.search(text)
    if not match:
        return text.splitlines()[0] if text else "invalid expression"
    line, column, problem = match.groups()
    problem = problem.split(" expecting ")[0].removeprefix("Syntax error: ")
    where = f"column {column}" if line == "1" else f"line {line}, column {column}"
    return f"syntax error at {where}: {problem}"
