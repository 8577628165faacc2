"""Conditions and templates in CEL (Common Expression Language).

CEL is not Turing-complete and cannot reach Python internals; we also bound the
source length.  Programs are compiled once and cached (definitions are immutable).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import cel

MAX_EXPRESSION_LENGTH = 2000
ROOTS = frozenset({"record", "vars", "steps", "run", "new", "old", "outcome"})
_TEMPLATE = re.compile(r"\$\{(.+?)\}")


class ExpressionError(ValueError):
    """An expression that does not compile or cannot be evaluated; the text says where."""


@lru_cache(maxsize=4096)
def compile_expression(source: str) -> Any:
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(
            f"expression is {len(source)} characters; the limit is {MAX_EXPRESSION_LENGTH}"
        )
    try:
        return cel.compile(source)
    except ValueError as exc:
        raise ExpressionError(_first_lines(str(exc))) from exc


def evaluate(source: str, context: dict[str, Any]) -> Any:
    program = compile_expression(source)
    try:
        return program.execute(context)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise ExpressionError(f"{source!r} failed: {exc}") from exc


def holds(source: str | None, context: dict[str, Any], *, default: bool = True) -> bool:
    """Evaluate a condition; a missing condition is ``default``; a non-bool is an error."""
    if source is None or not source.strip():
        return default
    result = evaluate(source, context)
    if not isinstance(result, bool):
        raise ExpressionError(f"{source!r} gave {type(result).__name__}, not true/false")
    return result


def render(value: Any, context: dict[str, Any]) -> Any:
    """Fill '${expr}' templates in strings, lists and dicts.

    A string that is exactly one template keeps the expression's type; otherwise the
    results are joined as text.
    """
    if isinstance(value, str):
        found = list(_TEMPLATE.finditer(value))
        # "${a}" keeps its type; "${a} and ${b}" is text (fullmatch alone would take
        # "a} and ${b" for one expression).
        if len(found) == 1 and found[0].span() == (0, len(value)):
            return evaluate(found[0].group(1), context)
        return _TEMPLATE.sub(lambda m: str(evaluate(m.group(1), context)), value)
    if isinstance(value, list):
        return [render(v, context) for v in value]
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    return value


def template_expressions(value: Any) -> list[str]:
    """Every '${expr}' inside a value, for publish-time checking."""
    if isinstance(value, str):
        return [m.group(1) for m in _TEMPLATE.finditer(value)]
    if isinstance(value, list):
        return [e for v in value for e in template_expressions(v)]
    if isinstance(value, dict):
        return [e for v in value.values() for e in template_expressions(v)]
    return []


def _first_lines(text: str) -> str:
    return "\n".join(text.splitlines()[:3])
