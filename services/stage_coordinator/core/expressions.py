"""Conditions and templates as the coordinator evaluates them: any failure is ExpressionError.

``shared.expressions`` turns the evaluator's KeyError, ValueError, TypeError and
RuntimeError into ExpressionError, but CEL also raises ZeroDivisionError and OverflowError
(``100 / vars.n``) and IndexError (``vars.list[5]``).  Escaping ``decide``, they would make
the message undecidable; here they put the run in Error like any other failed expression.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared import expressions
from shared.expressions import ExpressionError

__all__ = ["ExpressionError", "holds", "render"]

_EVALUATION_FAILURES = (ArithmeticError, LookupError)

# What an expression sees (``Transition.context``), asked for only when there is an
# expression to evaluate: most steps and stages have none, and building it is most of
# what a condition without an expression would cost.
ContextOf = Callable[[], dict[str, Any]]


def holds(source: str | None, context: ContextOf, *, default: bool = True) -> bool:
    if source is None or not source.strip():
        return default
    try:
        return expressions.holds(source, context(), default=default)
    except _EVALUATION_FAILURES as exc:
        raise ExpressionError(f"{source!r} failed: {exc!r}") from exc


def render(value: Any, context: ContextOf) -> Any:
    try:
        return expressions.render(value, context() if _templated(value) else {})
    except _EVALUATION_FAILURES as exc:
        raise ExpressionError(f"a template in {value!r} failed: {exc!r}") from exc


def _templated(value: Any) -> bool:
    """Whether ``render`` would evaluate anything in ``value`` (a template starts ``${``)."""
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, list):
        return any(map(_templated, value))
    if isinstance(value, dict):
        return any(map(_templated, value.values()))
    return False
