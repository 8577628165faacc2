"""The working state of one decision: a run copy, the events applied to it, messages out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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
    _audited: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def current(self) -> Run:
        if self.run is None:
            raise InvalidMove("the run does not exist")
        return self.run

    def apply(self, event: ev.RunEvent) -> None:
        old = self._audited if self._audited is not None else audited(self.run)
        if isinstance(event, ev.RunCreated):
            self.run = create(event)
        else:
            self.run = evolve(self.current, event)
        self.events.append(event)
        self._audited = new = audited(self.run)
        self.changes.append(changed(old, new))

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
    changes += [{"field": key, "old": None, "new": value}
                for key, value in new.items() if value is not None and key not in old]
    return changes


# A status's text (an enum's ``.value`` is a slow property; the str is the same text).
_text = str.__str__


def audited(run: Run | None) -> dict[str, Any]:
    """The fields of a run its history records changes of, flattened."""
    if run is None:
        return {}
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


def expression_context(run: Run) -> dict[str, Any]:
    """What conditions and templates see: record, vars, steps, run."""
    return {
        "record": run.record,
        "vars": run.vars,
        "steps": {
            s.name: {
                "status": s.status.value,
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
            "status": run.status.value,
        },
    }
