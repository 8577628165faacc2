"""Step actions.  Built-ins and custom ones are Python entry points in group ``baton.actions``.

An action is a class with ``async def run(self, inputs, context) -> ActionResult``.  It
raises :class:`RetryableError` for failures worth another attempt (timeouts, 5xx) and
:class:`FatalError` for those that are not (bad input, 4xx).  ``context.idempotency_key``
is the same for every delivery of one attempt: pass it to systems that deduplicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol

from contracts.envelope import Payload


class RetryableError(Exception):
    pass


class FatalError(Exception):
    pass


@dataclass(frozen=True)
class ActionContext:
    run_id: str
    orchestration: str
    stage: str
    step: str
    attempt: int
    idempotency_key: str
    operation_key: str = ""  # the same for every attempt of the step in one stage visit
    record_key: str | None = None  # "ObjectType:record_id" of the run's record, if any


@dataclass
class ActionResult:
    outputs: dict[str, Any] = field(default_factory=dict)
    messages: list[Payload] = field(default_factory=list)


class Action(Protocol):
    async def run(self, inputs: dict[str, Any], context: ActionContext) -> ActionResult: ...


def load_actions() -> dict[str, Action]:
    actions: dict[str, Action] = {}
    for ep in entry_points(group="baton.actions"):
        actions[ep.name] = ep.load()()
    return actions
