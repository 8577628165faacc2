"""The working state of one decision: a run copy, the events applied to it, messages out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

from contracts.envelope import Payload
from services.stage_coordinator.core import events as ev
from services.stage_coordinator.core.evolve import create, evolve
from services.stage_coordinator.core.state import (
    RUN_TRANSITIONS,
    STAGE_TRANSITIONS,
    STEP_TRANSITIONS,
    Run,
    RunStatus,
    StageStatus,
    StepStatus,
)
from shared.definitions import Definition

MAX_ADVANCE_ITERATIONS = 500
MAX_STAGE_ENTRIES = 200


@dataclass(frozen=True)
class Rejection:
    """A command that cannot apply to the run as it is; nothing changes."""

    reason: str


class InvalidMove(Exception):
    """Raised inside a decision when a transition table forbids a move; becomes a Rejection."""


class Halt(Exception):
    """The run cannot go on as its definition says; advancing puts it in Error with this."""

    def __init__(self, reason: str, step: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.step = step


@dataclass
class Transition:
    """Applies events to a private run copy as they are decided, and collects messages."""

    definition: Definition
    now: datetime
    actor: str
    run: Run | None = None
    events: list[ev.RunEvent] = field(default_factory=list)
    messages: list[Payload] = field(default_factory=list)
    # For each event applied, the audited fields it changed ({field, old, new} each): the
    # run history says what each event did without replaying it on a copy.
    changes: list[list[dict[str, Any]]] = field(default_factory=list)
    _context: tuple[Run, int, dict[str, Any]] | None = field(default=None, repr=False)

    @property
    def current(self) -> Run:
        if self.run is None:
            raise InvalidMove("the run does not exist")
        return self.run

    def apply(self, event: ev.RunEvent) -> None:
        scope = audit_scope(event)
        if scope is EVERYTHING:
            old = audited(self.run)
            self.run = create(event) if isinstance(event, ev.RunCreated) \
                else evolve(self.current, event)
            new = audited(self.run)
        else:  # a scope's fields (audited() of the scope, without its checks)
            run = self.current
            old = _audited_in(run, scope)
            self.run = run = evolve(run, event)
            new = _audited_in(run, scope)
        self.events.append(event)
        self.changes.append(changed(old, new))

    def context(self) -> dict[str, Any]:
        """What conditions and templates see of the run as it is now.

        Built once per revision (every event applied makes a new one): advancing asks for
        it for each step it starts and each route it takes, often with nothing applied
        in between.  Nothing changes the dict: it is shared until the run changes.
        """
        run = self.current
        if self._context is None or self._context[0] is not run \
                or self._context[1] != run.revision:
            self._context = (run, run.revision, expression_context(run))
        return self._context[2]

    def send(self, payload: Payload) -> None:
        self.messages.append(payload)

    @property
    def starting(self) -> bool:
        """Whether this transition creates the run (its RunStarted names the first stage)."""
        return bool(self.events) and isinstance(self.events[0], ev.RunCreated)

    # Every status change goes through the tables below.

    def move_run(self, status: RunStatus, reason: str = "") -> None:
        run = self.current
        if status not in RUN_TRANSITIONS[run.status]:
            raise InvalidMove(f"a {run.status} run cannot become {status}")
        self.apply(ev.RunStatusChanged(at=self.now, actor=self.actor, status=status, reason=reason))

    def check_step(self, name: str, to: StepStatus) -> None:
        step = self.current.steps[name]
        if to not in STEP_TRANSITIONS[step.status]:
            raise InvalidMove(f"step {name!r} is {step.status}; it cannot become {to}")

    def check_stage(self, name: str, to: StageStatus) -> None:
        stage = self.current.stages[name]
        if to not in STAGE_TRANSITIONS[stage.status]:
            raise InvalidMove(f"stage {name!r} is {stage.status}; it cannot become {to}")

    def run_event_fields(self) -> dict[str, Any]:
        run = self.current
        return {
            "orchestration": run.orchestration,
            "version": run.version,
            "record_key": run.record_key,
        }


def changed(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """The audited fields that differ, ``{field, old, new}`` each (a missing field is None):
    ``old``'s fields in their order, then those only ``new`` has."""
    changes = [{"field": key, "old": value, "new": new.get(key)}
               for key, value in old.items() if new.get(key) != value]
    if new.keys() != old.keys():  # most events' scopes have the same fields before and after
        changes += [{"field": key, "old": None, "new": value}
                    for key, value in new.items() if value is not None and key not in old]
    return changes


# A status's text (an enum's ``.value`` is a slow property; the str is the same text).
_text = str.__str__


class Scope(NamedTuple):
    """The audited fields one event can change: those of its applier in evolve.py.

    A tuple rather than a frozen dataclass: one is built for every event applied, and a
    frozen dataclass sets each field through ``object.__setattr__``.
    """

    run: bool = False  # status, stage, version, error
    stage: str | None = None
    step: str | None = None
    vars: bool = False
    timers: bool = False


EVERYTHING = None  # the scope of RunCreated and RunMigrated: every audited field
_NOTHING = Scope()  # ParticipantsJoined: participants are not audited


def _step_scope(event: Any) -> Scope:
    return Scope(step=event.step, timers=True)


def _stage_scope(event: Any) -> Scope:
    return Scope(stage=event.stage)


# By the event's type (one lookup, where a match statement tries each class in turn).
_SCOPES: dict[type[ev.RunEvent], Callable[[Any], Scope]] = {
    ev.StepSucceeded: lambda event: Scope(step=event.step, timers=True,
                                          vars=event.merge_into_vars),
    **dict.fromkeys((ev.StepStarted, ev.StepRetryScheduled, ev.StepFailed, ev.StepSkipped,
                     ev.StepCanceled, ev.StepReset), _step_scope),
    ev.StageEntered: lambda event: Scope(run=True, stage=event.stage),
    ev.StageSkipped: _stage_scope,
    ev.StageFinished: _stage_scope,
    ev.TimerScheduled: lambda _: Scope(timers=True),
    ev.TimerCleared: lambda _: Scope(timers=True),
    ev.RunStatusChanged: lambda _: Scope(run=True, timers=True),
    ev.ParticipantsJoined: lambda _: _NOTHING,
}


def audit_scope(event: ev.RunEvent) -> Scope | None:
    """What ``event`` can change of :func:`audited`'s fields, so that an event's changes
    compare a few fields rather than the whole run flattened twice.

    The coordinator's invariant tests check every transition's changes against the whole
    run flattened (coordinator_invariants.replayed_changes): an applier that changes more
    than its scope here fails them.
    """
    scope_of = _SCOPES.get(type(event))
    return EVERYTHING if scope_of is None else scope_of(event)


def audited(run: Run | None, scope: Scope | None = EVERYTHING) -> dict[str, Any]:
    """The fields of a run its history records changes of, flattened (those in ``scope``).

    The fields of a scope keep their order in the whole: ``changed`` then lists an event's
    changes in the same order whether it compares the whole run or the event's scope.
    """
    if run is None:
        return {}
    if scope is not EVERYTHING:
        return _audited_in(run, scope)
    fields: dict[str, Any] = {"status": _text(run.status), "stage": run.stage,
                              "version": run.version, "error": run.error}
    for name, stage in run.stages.items():
        fields[f"stages.{name}.status"] = _text(stage.status)
    for name, step in run.steps.items():
        fields[f"steps.{name}.status"] = _text(step.status)
        fields[f"steps.{name}.attempt"] = step.attempt
        fields[f"steps.{name}.error"] = step.error
    for name, value in run.vars.items():
        fields[f"vars.{name}"] = value
    fields["timers"] = sorted(timer.id for timer in run.timers)
    return fields


def _audited_in(run: Run, scope: Scope) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if scope.run:
        fields.update(status=_text(run.status), stage=run.stage, version=run.version,
                      error=run.error)
    stage = run.stages.get(scope.stage) if scope.stage is not None else None
    if stage is not None:
        fields[_stage_key(scope.stage)] = _text(stage.status)
    step = run.steps.get(scope.step) if scope.step is not None else None
    if step is not None:
        status, attempt, error = _step_keys(scope.step)
        fields[status] = _text(step.status)
        fields[attempt] = step.attempt
        fields[error] = step.error
    if scope.vars:
        for name, value in run.vars.items():
            fields[f"vars.{name}"] = value
    if scope.timers:
        fields["timers"] = sorted([timer.id for timer in run.timers]) if run.timers else []
    return fields


# The audited names of a stage's and a step's fields, asked for twice an event (before
# and after it) for the few names a definition has.
@lru_cache(maxsize=4096)
def _stage_key(stage: str) -> str:
    return f"stages.{stage}.status"


@lru_cache(maxsize=4096)
def _step_keys(step: str) -> tuple[str, str, str]:
    return f"steps.{step}.status", f"steps.{step}.attempt", f"steps.{step}.error"


def expression_context(run: Run) -> dict[str, Any]:
    """What conditions and templates see: record, vars, steps, run."""
    return {
        "record": run.record,
        "vars": run.vars,
        "steps": {
            s.name: {
                "status": _text(s.status),
                "outputs": s.outputs,
                "completed_by": s.completed_by or "",
                "decision": s.decision or "",
                "comment": s.comment or "",
            }
            for s in run.steps.values()
        },
        "run": {
            "id": run.id,
            "orchestration": run.orchestration,
            "version": run.version,
            "status": _text(run.status),
        },
    }
