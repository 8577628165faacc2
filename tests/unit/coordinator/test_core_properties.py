"""Property tests: no sequence of messages leaves a run in an impossible state.

Hypothesis draws sequences of outcomes (current, stale and future attempts), timer
firings (live and stale), redeliveries of earlier messages, and operator commands
(suspend, resume, cancel, retry, skip, migrate) against a definition that has a bit of
everything.  After every accepted message ``Story`` checks the invariants listed in
``coordinator_invariants``; this module adds what must be *accepted* (a live outcome, a
live timer, a command the tables allow), that a migration is refused exactly when and
why ``check_migration`` says, and that the stored history replays to the stored run.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from coordinator_builders import Story, definition, start
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.envelope import Payload
from contracts.events import commands as cmd
from contracts.events.steps import StepCompleted, StepFailed
from services.stage_coordinator.core.events import EVENT_ADAPTER
from services.stage_coordinator.core.evolve import replay
from services.stage_coordinator.core.state import Run, RunStatus, StepStatus
from services.stage_coordinator.core.transition import Rejection, Transition
from services.stage_coordinator.history import event_of, in_revision_order, numbered
from services.stage_coordinator.history import pages as history_pages
from shared.definitions.migration import check_migration
from shared.packed import opened, opened_all, packed

V1 = definition(
    """
name: test
inputs: {flag: {type: boolean, default: true}}
stages:
  - name: intake
    exit: "has(steps.fetch.outputs.n) && steps.fetch.outputs.n == 2"
    steps:
      - {name: form, kind: interactive, assignee: {queue: q}}
      - name: fetch
        action: http
        retries: {max_attempts: 3, backoff: 1s, max_backoff: 4s, jitter: 0.5}
      - name: enrich
        action: noop
        after: [fetch]
        when: "has(steps.form.outputs.go) && steps.form.outputs.go == true"
      - {name: pause, action: wait, inputs: {duration: 30s}}
  - name: review
    entry: "vars.flag == true"
    steps:
      - {name: approve, kind: approval, assignee: {user: u}}
      - {name: second, kind: approval, assignee: {user: v}, retries: {max_attempts: 2}}
      - {name: note, action: set_variables, after: [approve], optional: true,
         inputs: {flag: "${steps.approve.decision == 'approved'}"}}
    decisions:
      - when: "steps.approve.decision == 'rejected' && steps.second.decision == 'rejected'"
        goto: intake
      - when: "steps.approve.decision == 'approved' && steps.second.decision == 'approved'"
        end: true
    on_fault: {goto: recover}
  - name: publish
    steps:
      - {name: push, action: http, retries: {max_attempts: 2, backoff: 2s}}
      - {name: hold, action: wait, inputs: {duration: 1m}, when: "vars.flag == false"}
    on_fault: {goto: recover}
  - name: recover
    entry: "vars.flag == true"
    steps: [{name: fix, kind: interactive, assignee: {queue: ops}}]
    decisions:
      - {when: "has(steps.fix.outputs.go) && steps.fix.outputs.go == true", goto: review}
"""
)

# Kinds, actions and stages change; a step moves; another is added; a stage goes.
V2 = definition(
    """
name: test
inputs: {flag: {type: boolean, default: true}}
stages:
  - name: intake
    steps:
      - {name: form, kind: interactive, assignee: {queue: q}}
      - {name: fetch, action: http, retries: {max_attempts: 2}}
      - {name: pause, action: wait, inputs: {duration: 30s}}
      - {name: extra, action: noop}
  - name: review
    steps:
      - {name: approve, kind: approval, assignee: {user: u}}
      - {name: second, kind: interactive, assignee: {user: v}}
      - {name: note, action: set_variables, after: [approve], optional: true,
         inputs: {flag: "${steps.approve.decision == 'approved'}"}}
    decisions:
      - {when: "steps.approve.decision == 'rejected'", goto: intake}
    on_fault: {goto: publish}
  - name: publish
    steps:
      - {name: push, action: wait, inputs: {duration: 10s}}
      - {name: enrich, action: noop}
      - {name: hold, action: wait, inputs: {duration: 1m}, when: "vars.flag == false"}
""",
    version=2,
)
VERSIONS = {1: V1, 2: V2}

KINDS = [
    *["complete"] * 6, *["fail"] * 3, *["fire"] * 3, *["redeliver"] * 2, *["skip"] * 2,
    "stale_timer", "suspend", "resume", "retry", "migrate", "cancel", "start",
]  # fmt: skip
# (what happens, which step or timer or message, a yes/no, seconds passing)
ACTIONS = st.tuples(st.sampled_from(KINDS), st.integers(0, 999), st.booleans(), st.integers(0, 120))


class Simulation:
    """Turns drawn actions into messages for a Story, and checks what must be accepted."""

    def __init__(self) -> None:
        self.story = Story(V1, V2, replays=False)
        self.delivered: list[Payload] = []
        self.timer_ids: list[str] = []
        self.play("start", 0, True, 0)

    @property
    def run(self) -> Run:
        return self.story.state

    def play(self, kind: str, pick: int, flag: bool, seconds: int) -> None:
        self.story.now += timedelta(seconds=seconds)
        self.deliver(self.message(kind, pick, flag))

    def deliver(self, message: Payload) -> None:
        must_accept = self.must_accept(message)
        expected_refusal = self.migration_refusal(message)
        result = self.story.decide(message)
        if must_accept:
            assert isinstance(result, Transition), f"{message!r} refused: {result}"
        if isinstance(message, cmd.MigrateRun):
            reason = result.reason if isinstance(result, Rejection) else None
            assert reason == expected_refusal, (reason, expected_refusal)
        self.delivered.append(message)
        self.timer_ids.extend(t.id for t in self.run.timers if t.id not in self.timer_ids)

    def message(self, kind: str, pick: int, flag: bool) -> Payload:
        run = self.story.run
        steps = sorted(run.steps.values(), key=lambda s: s.name) if run else []
        busy = [s for s in steps if s.status is StepStatus.IN_PROGRESS]
        # Mostly a step in progress and its current attempt; else any step, any attempt.
        pool = busy if busy and pick % 5 != 4 else steps
        step = pool[(pick // 5) % len(pool)] if pool else None
        attempt = max(1, (step.attempt if step else 1) + [0, 0, 0, -1, 1][pick % 5])
        name = step.name if step else "fetch"
        if kind == "cancel" and pick % 8:
            kind = "complete"  # canceling ends the story: keep it rare
        if kind == "start":
            return start(record={"id": 1})
        if kind == "complete":
            outputs: dict[str, Any] = {"go": flag, "n": pick % 3, "flag": pick % 4 != 0}
            approval = step is not None and step.kind == "approval"
            decision = ("approved" if flag else "rejected") if approval else None
            return StepCompleted(step=name, attempt=attempt, outputs=outputs, decision=decision)
        if kind == "fail":
            return StepFailed(step=name, attempt=attempt, error="boom", retryable=flag)
        if kind == "fire" and self.run.timers:
            timer = self.run.timers[pick % len(self.run.timers)]
            return cmd.TimerFired(timer_id=timer.id, purpose=timer.purpose, step=timer.step)
        if kind in ("fire", "stale_timer"):
            timer_id = self.timer_ids[pick % len(self.timer_ids)] if self.timer_ids else "x"
            return cmd.TimerFired(timer_id=timer_id, purpose="retry")
        if kind == "redeliver":
            return self.delivered[pick % len(self.delivered)]
        if kind == "retry":
            return cmd.RetryStep(step=name, requested_by="ops")
        if kind == "skip":
            return cmd.SkipStep(step=name, requested_by="ops", outputs={"go": flag})
        if kind == "migrate":
            return cmd.MigrateRun(to_version=2 if self.run.version == 1 else 1)
        if kind == "suspend":
            return cmd.SuspendRun()
        if kind == "resume":
            return cmd.ResumeRun()
        assert kind == "cancel"
        return cmd.CancelRun(reason="drawn")

    def must_accept(self, message: Payload) -> bool:
        """Messages the tables allow: refusing one would lose an outcome or a command."""
        run = self.story.run
        if run is None:
            return isinstance(message, cmd.StartRun)
        if isinstance(message, StepCompleted | StepFailed):
            step = run.steps.get(message.step)
            return bool(
                run.active and step and step.status is StepStatus.IN_PROGRESS
                and step.attempt == message.attempt
            )  # fmt: skip
        if isinstance(message, cmd.TimerFired):
            return any(t.id == message.timer_id for t in run.timers)
        if isinstance(message, cmd.CancelRun):
            return run.active
        if isinstance(message, cmd.SuspendRun):
            return run.status is RunStatus.RUNNING
        if isinstance(message, cmd.ResumeRun):
            return run.status in (RunStatus.SUSPENDED, RunStatus.ERROR)
        if isinstance(message, cmd.RetryStep | cmd.SkipStep):
            step = run.steps.get(message.step)
            if not (run.active and step and step.stage == run.stage):
                return False
            if isinstance(message, cmd.SkipStep):
                return step.status is StepStatus.PENDING
            return step.status is StepStatus.FAILED and run.status is not RunStatus.SUSPENDED
        return False

    def migration_refusal(self, message: Payload) -> str | None:
        """What the coordinator must answer a MigrateRun: check_migration's reasons."""
        run = self.story.run
        if not isinstance(message, cmd.MigrateRun) or run is None:
            return None
        if not run.active:
            return f"a {run.status} run cannot be migrated"
        stage = run.stage or ""
        state = {"stage": run.stage,
                 "steps": {s.name: s.status.value for s in run.steps_of(stage)}}  # fmt: skip
        issues = check_migration(VERSIONS[run.version], VERSIONS[message.to_version], state)
        return "migration refused: " + "; ".join(map(str, issues)) if issues else None

    def check_stored_history_replays(self) -> None:
        """The history as stored replays to the run as stored.

        As ``run_history`` holds it: packed entries numbered by revision, in pages that may
        come back in any order and repeat entries (a page written again after a stop).
        """
        entries = numbered(self.run.id, 0, [e.model_dump(mode="python")
                                            for e in self.story.history])
        other = numbered("another-run", 0, [{"kind": "RunCreated"}])
        pages = [*history_pages([entries[: len(entries) // 2], other]),
                 *history_pages([entries])]
        read = in_revision_order(self.run.id, [e for p in reversed(pages)
                                               for e in opened_all(p["entries"])])
        assert [e["revision"] for e in read] == list(range(1, self.run.revision + 1))
        rebuilt = replay(EVENT_ADAPTER.validate_python(event_of(doc)) for doc in read)
        # As MongoDB stores them both: times to the millisecond.
        run = Run.model_validate(opened(packed(self.run.model_dump(mode="python"))))
        assert rebuilt.model_dump() == run.model_dump()


@settings(max_examples=150, deadline=None)
@given(st.lists(ACTIONS, max_size=40))
def test_no_sequence_of_messages_leaves_a_run_in_an_impossible_state(
    actions: list[tuple[str, int, bool, int]],
) -> None:
    simulation = Simulation()
    for action in actions:
        simulation.play(*action)
    simulation.check_stored_history_replays()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 999), st.booleans()), max_size=60))
def test_a_run_that_gets_every_outcome_and_timer_it_waits_for_never_errs(
    picks: list[tuple[int, bool]],
) -> None:
    """Only good news, in any order: the run goes on (or completes), never into Error."""
    simulation = Simulation()
    for pick, flag in picks:
        run = simulation.run
        if not run.active:
            break
        assert run.status is RunStatus.RUNNING
        waiting = [s for s in run.steps.values() if s.status is StepStatus.IN_PROGRESS]
        waiting = [s for s in waiting if not any(t.step == s.name for t in run.timers)]
        if run.timers and (pick % 3 == 0 or not waiting):
            timer = run.timers[pick % len(run.timers)]
            simulation.story.now = max(simulation.story.now, timer.due_at)
            simulation.deliver(cmd.TimerFired(timer_id=timer.id, purpose=timer.purpose))
            continue
        step = waiting[pick % len(waiting)]
        decision = ("approved" if flag else "rejected") if step.kind == "approval" else None
        outputs = {"go": flag, "n": pick % 3, "flag": pick % 4 != 0}
        simulation.deliver(StepCompleted(step=step.name, attempt=step.attempt, outputs=outputs,
                                         decision=decision))  # fmt: skip
    assert simulation.run.status in (RunStatus.RUNNING, RunStatus.COMPLETED)
    simulation.check_stored_history_replays()
