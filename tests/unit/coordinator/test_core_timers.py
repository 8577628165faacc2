"""Timers: retries with back-off and jitter, per-step timeouts, waits, stale firings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from coordinator_builders import T0, Story, definition, done, fail, fire, start

from contracts.events import commands as cmd
from contracts.events.steps import StepRequested
from services.stage_coordinator.core.dispatch import retry_delay
from services.stage_coordinator.core.events import RunCreated
from services.stage_coordinator.core.state import RunStatus, StepStatus
from services.stage_coordinator.core.transition import Transition

RETRIES = definition(
    """
name: test
stages:
  - name: only
    steps:
      - name: call
        action: http
        timeout: 10s
        retries: {max_attempts: 5, backoff: 2s, max_backoff: 10s, jitter: 0.25}
      - {name: other, action: noop}
"""
)


def test_the_step_timeout_goes_with_every_attempt_and_a_timeout_is_retried() -> None:
    story = Story(RETRIES)
    story.when(start())
    [call] = [m for m in story.sent(StepRequested) if m.step == "call"]
    assert call.timeout_seconds == 10
    assert call.idempotency_key == "r1:call:1"
    story.when(fail("call", error="timed out after 10s"))  # the step-runner enforces it
    assert story.step("call").status is StepStatus.WAITING_RETRY
    story.when(fire(story.timer("call")), after=3)
    [again] = story.sent(StepRequested)
    assert (again.attempt, again.timeout_seconds, again.idempotency_key) == (2, 10, "r1:call:2")


def test_retries_back_off_exponentially_with_jitter_up_to_max_backoff() -> None:
    story = Story(RETRIES)
    story.when(start())
    waits = []
    for attempt in range(1, 5):
        story.when(fail("call", attempt=attempt))
        timer = story.timer("call")
        assert timer.id == f"retry:call:{attempt}"
        waits.append((timer.due_at - story.now).total_seconds())
        story.when(fire(timer), after=waits[-1])
        assert story.dispatched() == [("call", attempt + 1)]
    for attempt, (wait, base) in enumerate(zip(waits, [2, 4, 8, 10], strict=True), 1):
        assert base * 0.75 <= wait <= min(base * 1.25, 10), (attempt, wait)
    story.when(fail("call", attempt=5))  # no attempt left
    assert story.step("call").status is StepStatus.FAILED
    assert story.state.status is RunStatus.ERROR


def test_the_jitter_differs_between_runs_and_is_the_same_when_decided_again() -> None:
    def first_wait(run_id: str) -> timedelta:
        story = Story(RETRIES, run_id=run_id)
        story.when(start())
        story.when(fail("call"))
        return story.timer("call").due_at - story.now

    waits = {first_wait(f"run-{n}") for n in range(8)}
    assert len(waits) > 1
    assert first_wait("run-1") == first_wait("run-1")


@pytest.mark.parametrize("attempt", [1, 3, 6, 20, 100])
def test_a_retry_never_waits_longer_than_max_backoff(attempt: int) -> None:
    """Regression: the jitter was added after the cap, so a wait could exceed max_backoff."""
    step = RETRIES.step("only", "call")
    for run_id in (f"run-{n}" for n in range(40)):
        t = Transition(definition=RETRIES, now=T0, actor="system")
        t.apply(
            RunCreated(at=T0, run_id=run_id, orchestration="test", version=1, stages=["only"],
                       steps=[("only", "call", "background")])
        )  # fmt: skip
        delay = retry_delay(t, step, attempt).total_seconds()
        assert 0 < delay <= 10


def test_a_fatal_error_is_not_retried() -> None:
    story = Story(RETRIES)
    story.when(start())
    story.when(fail("call", retryable=False))
    assert story.step("call").status is StepStatus.FAILED
    assert story.state.timers == []


def test_a_stale_or_unknown_timer_is_refused() -> None:
    story = Story(RETRIES)
    story.when(start())
    story.when(fail("call"))
    timer = story.timer("call")
    story.when(fire(timer), after=5)
    assert "no longer set" in story.refused(fire(timer))
    assert "no longer set" in story.refused(cmd.TimerFired(timer_id="retry:call:9", purpose="x"))


def test_an_outcome_of_an_earlier_attempt_is_refused() -> None:
    story = Story(RETRIES)
    story.when(start())
    story.when(fail("call"))
    story.when(fire(story.timer("call")), after=5)
    assert "stale outcome" in story.refused(done("call", attempt=1))
    assert "stale outcome" in story.refused(done("call", attempt=3))
    story.when(done("call", attempt=2))


def test_an_operator_retry_starts_a_step_waiting_for_its_retry_now() -> None:
    """Regression: it reset the step to pending, a move the step table forbids."""
    story = Story(RETRIES)
    story.when(start())
    story.when(fail("call"))
    story.when(cmd.RetryStep(step="call", requested_by="ops"))
    assert story.dispatched() == [("call", 2)]
    assert story.state.timers == []


def test_skipping_a_step_waiting_for_its_retry_drops_its_timer() -> None:
    """Regression: the retry timer outlived the skipped step."""
    story = Story(RETRIES)
    story.when(start())
    story.when(fail("call"))
    story.when(cmd.SkipStep(step="call"))
    assert story.step("call").status is StepStatus.SKIPPED
    assert story.state.timers == []


def test_a_retry_due_while_the_run_is_suspended_starts_when_it_resumes() -> None:
    story = Story(RETRIES)
    story.when(start())
    story.when(fail("call"))
    story.when(cmd.SuspendRun())
    story.when(fire(story.timer("call")), after=30)
    assert story.dispatched() == []
    assert story.step("call").status is StepStatus.WAITING_RETRY
    story.when(cmd.ResumeRun(), after=60)
    assert story.dispatched() == [("call", 2)]


def test_a_retry_due_while_the_run_is_in_error_starts_when_it_runs_again() -> None:
    """Regression: the fired timer was dropped and the step waited for ever."""
    two = definition(
        """
name: test
stages:
  - name: only
    steps:
      - {name: flaky, action: http, retries: {max_attempts: 3}}
      - {name: broken, action: http, retries: {max_attempts: 1}}
"""
    )
    story = Story(two)
    story.when(start())
    story.when(fail("flaky"))
    story.when(fail("broken"))
    assert story.state.status is RunStatus.ERROR
    story.when(fire(story.timer("flaky")), after=5)
    story.when(cmd.SkipStep(step="broken", requested_by="ops"))
    assert story.dispatched() == [("flaky", 2)]


WAITS = definition(
    """
name: test
inputs: {until: {type: string, default: "2026-01-06T09:00:00"}}
stages:
  - name: only
    steps:
      - {name: cool_off, action: wait, inputs: {duration: 2h}}
      - {name: appointment, action: wait, inputs: {until: "${vars.until}"}}
      - {name: after_both, action: noop, after: [cool_off, appointment]}
"""
)


def test_a_wait_is_a_timer_not_a_dispatched_step() -> None:
    story = Story(WAITS)
    story.when(start())
    assert story.dispatched() == []
    assert story.timer("cool_off").due_at == T0 + timedelta(hours=2)
    assert story.timer("appointment").due_at == datetime(2026, 1, 6, 9, tzinfo=UTC)
    story.when(fire(story.timer("cool_off")), after=7200)
    assert story.step("cool_off").status is StepStatus.COMPLETED
    assert story.step("cool_off").outputs == {"waited_until": str(story.now)}
    story.when(fire(story.timer("appointment")), after=3600 * 22)
    assert story.dispatched() == [("after_both", 1)]


def test_a_wait_that_ends_while_the_run_is_suspended_completes_on_resume() -> None:
    """Regression: the wait step stayed in progress for ever."""
    story = Story(WAITS)
    story.when(start())
    story.when(cmd.SuspendRun())
    story.when(fire(story.timer("cool_off")), after=7200)
    assert story.step("cool_off").status is StepStatus.IN_PROGRESS
    story.when(cmd.ResumeRun())
    assert story.step("cool_off").status is StepStatus.COMPLETED


def test_a_wait_that_cannot_tell_how_long_puts_the_run_in_error() -> None:
    """Regression: a bad duration raised out of decide instead."""
    bad = definition(
        """
name: test
inputs: {d: {type: string, default: "soon"}}
stages:
  - name: only
    steps: [{name: pause, action: wait, inputs: {duration: "${vars.d}"}}]
"""
    )
    story = Story(bad)
    story.when(start())
    assert story.state.status is RunStatus.ERROR
    assert story.state.error is not None
    assert story.state.error.startswith("only.pause: cannot tell how long to wait")
    assert story.step("pause").status is StepStatus.PENDING
