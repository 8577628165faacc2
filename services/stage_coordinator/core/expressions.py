"""Conditions and templates as the coordinator evaluates them: any failure is ExpressionError.

``shared.expressions`` turns the evaluator's KeyError, ValueError, TypeError and
RuntimeError into ExpressionError, but CEL also raises ZeroDivisionError and OverflowError
(``100 / vars.n``) and IndexError (``vars.list[5]``).  Escaping ``decide``, they would make
the message undecidable; here they put the run in Error like any other failed expression.
"""

from __future__ import annotations

from typing import Any

from shared import expressions
from shared.expressions import ExpressionError

__all__ = ["ExpressionError", "holds", "render"]

_EVALUATION_FAILURES = (ArithmeticError, LookupError)


def holds(source: str | None, context: dict[str, Any], *, default: bool = True) -> bool:
    try:
        return expressions.holds(source, context, default=default)
    except _EVALUATION_FAILURES as exc:
        raise ExpressionError(f"{source!r} failed: {exc!r}") from exc


def render(value: Any, context: dict[str, Any]) -> Any:
    try:
        return expressions.render(value, context)
    except _EVALUATION_FAILURES as exc:
        raise ExpressionError(f"a template in {value!r} failed: {exc!r}") from exc
