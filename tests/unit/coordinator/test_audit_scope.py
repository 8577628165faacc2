"""An event's history changes, compared field by field within the event's scope
(``transition.audit_scope``), are those of the whole run flattened before and after it.

Runs of the bench workload (docs/benchmarks.md) and of every example orchestration get
their outcomes in an order, and with decisions and failures, that hypothesis draws; every
transition's changes are compared with a replay that flattens the whole run (as the
history did before scopes), field order included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bench.bench_harness import DEFINITION
from coordinator_builders import ACTIONS, Story, definition
from coordinator_invariants import replayed_changes
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.envelope import Payload
from contracts.events import commands as cmd
from contracts.events.steps import StepCompleted, StepFailed
from services.stage_coordinator.core.state import Run, RunStatus, StepStatus
from services.stage_coordinator.core.transition import Transition
from shared.definitions import Definition
from shared.definitions.loading import load_definition
from shared.definitions.validate import validate_definition

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
BENCH = definition(DEFINITION)  # the bench workload (docs/benchmarks.md)


def example(name: str) -> Definition:
    data = load_definition((EXAMPLES / name).read_text(), fmt="yaml")
    return validate_definition({**data, "version": 1}, known_actions=ACTIONS)


DEFINITIONS = {
    "bench": BENCH,
    **{path.name: example(path.name) for path in sorted(EXAMPLES.glob("*.yaml"))
       if path.name != "directory.yaml"},
}
PICKS = st.lists(st.tuples(st.integers(0, 999), st.integers(0, 9)), min_size=1, max_size=20)
MAX_MESSAGES = 200


def record_of(chosen: Definition, pick: int) -> dict[str, Any]:
    values = {"string": f"v{pick % 3}", "number": pick % 50, "integer": pick % 50,
              "boolean": pick % 2 == 0}
    return {name: values.get(kind, "x") for name, kind in (chosen.record_fields or {}).items()}


class Walk:
    """One run, fed outcomes, failures, timers and now and then an operator's command."""

    def __init__(self, chosen: Definition, pick: int) -> None:
        self.story = Story(chosen, replays=False)
        self.changes: list[list[dict[str, Any]]] = []  # as the history records them
        record = cmd.RecordRef(object_type="Thing", record_id="1",
                               fields=record_of(chosen, pick))
        self.deliver(cmd.StartRun(orchestration=chosen.name, record=record, requested_by="ann"))

    @property
    def run(self) -> Run:
        return self.story.state

    def deliver(self, message: Payload) -> None:
        before = self.story.run.model_copy(deep=True) if self.story.run else None
        result = self.story.decide(message)  # checks the invariants, replayed changes too
        if isinstance(result, Transition):
            assert result.changes == replayed_changes(before, result.events)
            self.changes.extend(result.changes)

    def step(self, pick: int, choice: int) -> bool:
        """Deliver one message the run may be waiting for; False once it waits for none."""
        run = self.run
        if run.status is RunStatus.ERROR:
            self.deliver(cmd.CancelRun(reason="walk over", requested_by="op"))
            return False
        if not run.active:
            return False
        if run.status is RunStatus.SUSPENDED or choice == 9:
            self.deliver(cmd.ResumeRun(requested_by="op") if run.status is RunStatus.SUSPENDED
                         else cmd.SuspendRun(requested_by="op"))
            return True
        waiting = [s for s in run.steps.values() if s.status is StepStatus.IN_PROGRESS
                   and not any(t.step == s.name for t in run.timers)]
        if run.timers and (choice == 0 or not waiting):
            timer = run.timers[pick % len(run.timers)]
            self.story.now = max(self.story.now, timer.due_at)
            self.deliver(cmd.TimerFired(timer_id=timer.id, purpose=timer.purpose))
            return True
        if not waiting:
            return False
        step = waiting[pick % len(waiting)]
        if choice == 1:
            self.deliver(StepFailed(step=step.name, attempt=step.attempt, error="boom",
                                    retryable=pick % 2 == 0))
            return True
        decision = ("approved" if choice > 3 else "rejected") if step.kind == "approval" else None
        # What the examples' conditions and templates read of outputs (a set_variables
        # step's outputs become vars: onboarding_status).
        outputs = {"desk_needed": choice % 2 == 0, "resolution": f"r{pick % 2}",
                   "serial_number": "SN1", "start_date": "2026-02-01",
                   "onboarding_status": "complete"}
        self.deliver(StepCompleted(step=step.name, attempt=step.attempt, outputs=outputs,
                                   decision=decision, completed_by=f"u{pick % 3}"))
        return True


@pytest.mark.parametrize("name", sorted(DEFINITIONS))
@settings(max_examples=40, deadline=None)
@given(picks=PICKS)
def test_scoped_changes_are_those_of_the_whole_run(name: str,
                                                   picks: list[tuple[int, int]]) -> None:
    walk = Walk(DEFINITIONS[name], picks[0][0])
    for n in range(MAX_MESSAGES):  # the picks over and over, until the run waits for nothing
        if not walk.step(*picks[n % len(picks)]):
            break


def test_the_bench_run_records_its_changes_field_by_field() -> None:
    """The bench run's history as the burst writes it: 16 events, their changes pinned."""
    walk = Walk(BENCH, 0)
    for step in ("prepare", "legal", "finance", "close"):
        walk.deliver(StepCompleted(step=step, attempt=1))
    assert walk.run.status is RunStatus.COMPLETED
    changes = [[(c["field"], c["old"], c["new"]) for c in e] for e in walk.changes]
    assert len(changes) == 16
    assert changes[1] == [("stage", None, "prepare"),
                          ("stages.prepare.status", "pending", "in_progress")]
    assert changes[2] == [("steps.prepare.status", "pending", "in_progress"),
                          ("steps.prepare.attempt", 0, 1)]
    assert changes[-1] == [("status", "running", "completed")]

