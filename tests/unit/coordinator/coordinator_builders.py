"""Given/when/then helpers for the stage-coordinator core: definitions, messages, a story.

A ``Story`` feeds messages to ``decide`` one at a time, keeps the run and its history as
the shell would store them, and after every accepted message checks the invariants of
``coordinator_invariants`` (transition tables, replay, revision, ...).  Tests then read
the run, the events and the messages of the last transition.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

import yaml
from coordinator_invariants import check_history, check_run, check_transition

from contracts.envelope import Payload
from contracts.events import commands as cmd
from contracts.events.steps import StepCompleted, StepFailed
from services.stage_coordinator.core import events as ev
from services.stage_coordinator.core.decide import Context, decide
from services.stage_coordinator.core.evolve import replay
from services.stage_coordinator.core.state import Run, StageState, StepState, Timer
from services.stage_coordinator.core.transition import Rejection, Transition
from shared.definitions import Definition
from shared.definitions.validate import validate_definition

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
ACTIONS = frozenset({"http", "noop", "publish_record_update", "set_variables", "wait"})
M = TypeVar("M", bound=Payload)


def definition(text: str, version: int = 1) -> Definition:
    """A definition as publishing would accept it (so tests use only valid definitions)."""
    data = yaml.safe_load(text)
    data["version"] = version
    return validate_definition(data, known_actions=ACTIONS)


def start(name: str = "test", record: dict[str, Any] | None = None, **inputs: Any) -> cmd.StartRun:
    ref = cmd.RecordRef(object_type="Thing", record_id="1", fields=record) if record else None
    return cmd.StartRun(orchestration=name, inputs=inputs, record=ref, requested_by="ann")


def done(step: str, attempt: int = 1, **outputs: Any) -> StepCompleted:
    return StepCompleted(step=step, attempt=attempt, outputs=outputs)


def verdict(
    step: str, decision: Literal["approved", "rejected"], attempt: int = 1, comment: str = ""
) -> StepCompleted:
    return StepCompleted(
        step=step, attempt=attempt, decision=decision, comment=comment, completed_by="mia"
    )


def fail(step: str, attempt: int = 1, *, retryable: bool = True, error: str = "boom") -> StepFailed:
    return StepFailed(step=step, attempt=attempt, error=error, retryable=retryable)


def fire(timer: Timer) -> cmd.TimerFired:
    return cmd.TimerFired(timer_id=timer.id, purpose=timer.purpose, step=timer.step)


class Story:
    """One run of ``versions[0]`` (or a later version after a migration), message by message."""

    def __init__(self, *versions: Definition, run_id: str = "r1", replays: bool = True) -> None:
        self.versions = {d.version: d for d in versions}
        self.replays = replays  # replay the whole history after every message
        self.run_id = run_id
        self.run: Run | None = None
        self.history: list[ev.RunEvent] = []
        self.now = T0
        self.last: Transition | None = None
        self.first_version = versions[0].version

    # --- when --------------------------------------------------------------------------

    def decide(self, message: Payload, *, actor: str = "system") -> Transition | Rejection:
        """Decide ``message`` against the stored run; store the result if it is accepted."""
        before = self.run.model_dump() if self.run else None
        version = self.run.version if self.run else self.first_version
        target = None
        if isinstance(message, cmd.MigrateRun):
            target = self.versions.get(message.to_version)
        context = Context(
            run_id=self.run_id,
            now=self.now,
            definition=self.versions[version],
            actor=actor,
            target_definition=target,
        )
        result = decide(self.run, message, context)
        after = self.run.model_dump() if self.run else None
        assert after == before, "decide changed the run it was given"
        if isinstance(result, Transition):
            check_transition(self.run, result, self.versions)
            self.history.extend(result.events)
            self.run = result.current
            self.last = result
            check_history(self.history, self.run)
            check_run(self.run, self.versions, self.history)
            if self.replays:
                assert replay(self.history).model_dump() == self.run.model_dump()
        return result

    def when(self, message: Payload, *, after: float = 0, actor: str = "system") -> Transition:
        """``message`` arrives ``after`` seconds later and is accepted."""
        self.now += timedelta(seconds=after)
        result = self.decide(message, actor=actor)
        assert isinstance(result, Transition), f"{message!r} was rejected: {result}"
        return result

    def refused(self, message: Payload, *, after: float = 0) -> str:
        """``message`` is rejected and changes nothing; returns the reason."""
        self.now += timedelta(seconds=after)
        revision = self.run.revision if self.run else None
        result = self.decide(message)
        assert isinstance(result, Rejection), f"{message!r} was accepted"
        assert (self.run.revision if self.run else None) == revision
        return result.reason

    # --- then --------------------------------------------------------------------------

    @property
    def state(self) -> Run:
        assert self.run is not None
        return self.run

    def step(self, name: str) -> StepState:
        return self.state.steps[name]

    def stage(self, name: str) -> StageState:
        return self.state.stages[name]

    def statuses(self, *names: str) -> dict[str, str]:
        return {name: self.step(name).status.value for name in names}

    def sent(self, kind: type[M]) -> list[M]:
        """The messages of ``kind`` the last transition publishes."""
        assert self.last is not None
        return [m for m in self.last.messages if isinstance(m, kind)]

    def dispatched(self) -> list[tuple[str, int]]:
        """(step, attempt) of every step request or work item the last transition sends."""
        assert self.last is not None
        return [
            (m.step, m.attempt)  # type: ignore[attr-defined]
            for m in self.last.messages
            if type(m).__name__ in ("StepRequested", "WorkItemRequested")
        ]

    def events(self, kind: type[ev.RunEvent]) -> list[ev.RunEvent]:
        assert self.last is not None
        return [e for e in self.last.events if isinstance(e, kind)]

    def timer(self, step: str) -> Timer:
        [timer] = [t for t in self.state.timers if t.step == step]
        return timer
