"""Step actions.  Built-ins and custom ones are Python entry points in group ``baton.actions``.

An entry point names a class; when the class has a ``from_settings`` class method, it is
built with the step-runner's settings (the http action reads its outbound allowlist there).
Actions for tests only (``flaky``) are no entry points: a test stack adds them by import
path with ``BATON_EXTRA_ACTIONS`` (see :data:`TEST_ACTIONS`).

An action is a class with ``async def run(self, inputs, context) -> ActionResult``.  It
raises :class:`RetryableError` for failures worth another attempt (timeouts, 5xx) and
:class:`FatalError` for those that are not (bad input, 4xx).  ``context.idempotency_key``
is the same for every delivery of one attempt: pass it to systems that deduplicate.
An action without side effects says ``replayable = True`` (see :func:`replayable`).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
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


def replayable(action: object) -> bool:
    """Whether running an attempt again gives the same outcome and touches nothing outside.

    An action says so with a class attribute ``replayable = True``: its result depends
    only on its inputs and context, and any messages it returns get event ids derived from
    the dispatch, so a second run publishes what consumers drop as repeats.  The step-runner
    stores no outcome for such an attempt: a redelivered dispatch simply runs it again.
    """
    return getattr(action, "replayable", False) is True


# What a test stack sets in BATON_EXTRA_ACTIONS (never registered as entry points).
TEST_ACTIONS = {"flaky": "services.step_runner.actions.testing:Flaky"}


def load_actions(settings: Any = None, extra: Mapping[str, str] | None = None
                 ) -> dict[str, Action]:
    """The installed actions, plus ``extra`` (name -> "module:Class")."""
    factories: dict[str, Any] = {}
    for ep in entry_points(group="baton.actions"):
        if ep.name in TEST_ACTIONS and ep.name not in (extra or {}):
            continue  # an install made before test actions left the entry points
        factories[ep.name] = ep.load
    for name, target in (extra or {}).items():
        factories[name] = lambda target=target: _import(target)
    actions: dict[str, Action] = {}
    for name, load in factories.items():
        factory = load()
        from_settings = getattr(factory, "from_settings", None)
        actions[name] = from_settings(settings) if from_settings and settings else factory()
    return actions


def _import(target: str) -> Any:
    module, _, attribute = target.partition(":")
    if not module or not attribute:
        raise ValueError(f"an extra action is 'module:Class', not {target!r}")
    return getattr(importlib.import_module(module), attribute)
