"""What publish-time checks report: an issue is a place in the document and a sentence."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shared.definitions.model import Stage, Step


@dataclass(frozen=True)
class Issue:
    """One problem in a definition.

    ``path`` names the place, e.g. ``stages[1](it).steps[0](laptop).after[0]``: the index
    says where in the document, the name in brackets says which one people meant.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class DefinitionError(ValueError):
    """A definition that cannot be published; ``issues`` holds every problem found."""

    def __init__(self, issues: Sequence[Issue]) -> None:
        self.issues: list[Issue] = list(issues)
        super().__init__(self._text())

    def _text(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)

    def __str__(self) -> str:
        return self._text()


def stage_path(index: int, stage: Stage) -> str:
    return f"stages[{index}]({stage.name})"


def step_path(stage_index: int, stage: Stage, step_index: int, step: Step) -> str:
    return f"{stage_path(stage_index, stage)}.steps[{step_index}]({step.name})"


def listing(names: Iterable[str]) -> str:
    """Names for a message: sorted, comma-separated, 'none' when there are none."""
    unique = sorted(set(names))
    return ", ".join(unique) if unique else "none"
