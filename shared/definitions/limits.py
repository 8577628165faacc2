"""Limits on what one definition may ask for: compile work at publish, time per step.

Compiling and checking expressions is the costly part of validating a definition (each
CEL compile holds the GIL while it runs), so a definition gets a budget: at most
``MAX_EXPRESSIONS`` expressions and ``MAX_EXPRESSION_TEXT`` characters of them in all
(each one also stays under ``shared.expressions.MAX_EXPRESSION_LENGTH``).  Past it nothing
more is compiled.  The largest of the shipped examples uses under 60 expressions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import TypeVar

from shared.definitions.issues import Issue, step_path
from shared.definitions.model import Definition, StepKind

MAX_EXPRESSIONS = 2000
MAX_EXPRESSION_TEXT = 100_000  # characters over every expression of the definition
T = TypeVar("T")


class BudgetSpent(Exception):
    def __init__(self, issue: Issue) -> None:
        super().__init__(issue.message)
        self.issue = issue


def within_budget(expressions: Iterable[tuple[str, str, T]]) -> Iterator[tuple[str, str, T]]:
    """(path, source, ...) items, until the budget is spent: then BudgetSpent."""
    characters = 0
    for count, item in enumerate(expressions, start=1):
        path, source = item[0], item[1]
        characters += len(source)
        if count > MAX_EXPRESSIONS:
            raise BudgetSpent(Issue(path, (
                f"the definition has more than {MAX_EXPRESSIONS} expressions; split it or"
                " simplify it")))
        if characters > MAX_EXPRESSION_TEXT:
            raise BudgetSpent(Issue(path, (
                f"the definition's expressions add up to more than {MAX_EXPRESSION_TEXT}"
                " characters; split it or simplify it")))
        yield item


def check_timeouts(definition: Definition, longest: timedelta | None) -> list[Issue]:
    """Background steps whose ``timeout`` is over the deployment's longest step."""
    if longest is None:
        return []
    return [
        Issue(f"{step_path(i, stage, j, step)}.timeout",
              f"{_seconds(step.timeout)} is longer than the longest a step may run here"
              f" ({_seconds(longest)}, BATON_MAX_STEP_TIMEOUT_SECONDS)")
        for i, stage in enumerate(definition.stages)
        for j, step in enumerate(stage.steps)
        if step.kind is StepKind.BACKGROUND and step.timeout > longest
    ]


def _seconds(duration: timedelta) -> str:
    return f"{duration.total_seconds():g}s"
