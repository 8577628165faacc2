"""Typed run inputs and who may start runs: checked at publish and at every start.

A definition that declares ``inputs`` takes those and no others, each of its type (and
matching its ``pattern``, one of its ``enum``, at most ``max_length`` long); one that
declares none takes any inputs, as before.  ``starters`` names the users, groups and roles
who may start runs from the API and the CLI; without it anyone with a token may.  Runs
started by record changes (Kafka) are the definition's own trigger and are not checked.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from shared.definitions.issues import Issue, listing
from shared.definitions.model import Definition, InputSpec, Starters

ADMIN_ROLE = "admin"
MAX_MATCHED_LENGTH = 10_000  # longer text is refused rather than matched against a pattern
# A repeated group whose body is one repeated item, as in (a+)+, (\w*)* or ([a-z]+)*: the
# classic pattern whose backtracking takes exponential time (and patterns are matched in
# the trigger's event loop).  A heuristic: it does not find every slow pattern.
_NESTED_QUANTIFIER = re.compile(
    r"\((?:\?:)?(?:\\.|\[(?:\\.|[^\]])*\]|[^()\\|])(?:[+*]|\{\d*,\d*\})\??\)\s*(?:[+*]|\{\d*,)")
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "number": (int, float), "integer": (int,), "boolean": (bool,),
    "object": (dict,), "array": (list,),
}
_JSON_NAMES = {str: "text", int: "a number", float: "a number", bool: "true/false",
               dict: "an object", list: "an array", type(None): "null"}


def check_input_specs(definition: Definition) -> list[Issue]:
    """Publish-time: patterns that compile (and cannot blow up), enums and defaults that fit."""
    issues: list[Issue] = []
    for name, spec in definition.inputs.items():
        at = f"inputs.{name}"
        if spec.pattern is not None:
            issues += [Issue(f"{at}.pattern", m) for m in _pattern_problems(spec)]
        if spec.max_length is not None and spec.type != "string":
            issues.append(Issue(f"{at}.max_length", "max_length applies to string inputs"))
        for k, value in enumerate(spec.enum or []):
            issues += [Issue(f"{at}.enum[{k}]", m) for m in value_problems(spec, value, False)]
        if spec.default is not None:
            issues += [Issue(f"{at}.default", m) for m in value_problems(spec, spec.default)]
    return issues


def _pattern_problems(spec: InputSpec) -> list[str]:
    pattern = spec.pattern or ""
    if spec.type != "string":
        return ["a pattern applies to string inputs"]
    try:
        re.compile(pattern)
    except re.error as exc:
        return [f"{pattern!r} is not a valid regular expression: {exc}"]
    if _NESTED_QUANTIFIER.search(pattern):
        return [f"{pattern!r} repeats a group that itself repeats (like (a+)+), which can take"
                " exponential time to match; rewrite it without the nested repetition"]
    return []


def value_problems(spec: InputSpec, value: Any, with_enum: bool = True) -> list[str]:
    """Why a value does not fit an input's spec (nothing when it fits)."""
    kinds = _TYPES[spec.type]
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        given = _JSON_NAMES.get(type(value), type(value).__name__)
        return [f"must be {'an' if spec.type[0] in 'aeiou' else 'a'} {spec.type}, not {given}"]
    if isinstance(value, str):
        if spec.max_length is not None and len(value) > spec.max_length:
            return [f"is {len(value)} characters; the most is {spec.max_length}"]
        if spec.pattern is not None:
            if len(value) > MAX_MATCHED_LENGTH:
                return [f"is too long to match a pattern (over {MAX_MATCHED_LENGTH} characters)"]
            if re.search(spec.pattern, value) is None:
                return [f"does not match the pattern {spec.pattern!r}"]
    if with_enum and spec.enum is not None and not any(_same(value, v) for v in spec.enum):
        shown = ", ".join(repr(v) for v in spec.enum[:20])
        return [f"must be one of {shown}{', ...' if len(spec.enum) > 20 else ''}"]
    return []


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1."""
    return isinstance(a, bool) == isinstance(b, bool) and bool(a == b)


def input_problems(specs: Mapping[str, InputSpec], given: Mapping[str, Any]
                   ) -> list[tuple[str, str]]:
    """(input, message) for every input that does not fit; an untyped definition takes any."""
    if not specs:
        return []
    problems = [(name, f"is not an input of this orchestration (inputs: {listing(specs)})")
                for name in given if name not in specs]
    for name, spec in specs.items():
        if name in given:
            problems += [(name, message) for message in value_problems(spec, given[name])]
        elif spec.required:
            problems.append((name, "is required"))
    return problems


def may_start(starters: Starters | None, user_id: str, roles: Collection[str],
              groups: Collection[str]) -> bool:
    """Whether this person may start runs of the definition (admins always may)."""
    if starters is None or ADMIN_ROLE in roles:
        return True
    return (user_id in starters.users or any(r in roles for r in starters.roles)
            or any(g in groups for g in starters.groups))
