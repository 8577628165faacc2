"""Failures: fault paths, Error, and what an operator does about it (retry, skip, resume)."""

from __future__ import annotations

from coordinator_builders import Story, definition, done, fail, fire, start

from contracts.events import commands as cmd
from contracts.events import runs as run_events
from contracts.events.steps import StepRequested
from contracts.events.workitems import WorkItemCancelRequested
from services.stage_coordinator.core.state import RunStatus, StageStatus, StepStatus

FAULT_PATH = definition(
    """
name: test
stages:
  - name: sync
    steps:
      - {name: push, action: http, retries: {max_attempts: 2, backoff: 1s}}
      - {name: check, kind: interactive, assignee: {user: ann}}
    on_fault: {goto: rescue}
  - name: done
    steps: [{name: close, action: noop}]
  - name: rescue
    steps: [{name: fix, kind: interactive, assignee: {queue: ops}}]
"""
)


def test_a_step_that_fails_after_its_retries_sends_the_stage_to_its_fault_path() -> None:
    story = Story(FAULT_PATH)
    story.when(start())
    story.when(fail("push"))
    assert story.step("push").status is StepStatus.WAITING_RETRY  # one attempt left
    story.when(fire(story.timer("push")), after=2)
    story.when(fail("push", attempt=2))
    assert story.stage("sync").status is StageStatus.FAULTED
    assert story.statuses("push", "check") == {"push": "failed", "check": "canceled"}
    assert [m.step for m in story.sent(WorkItemCancelRequested)] == ["check"]
    assert story.state.stage == "rescue"
    assert story.dispatched() == [("fix", 1)]
    assert story.state.status is RunStatus.RUNNING
    # No stage completed: the stage entered has a message of its own (decision 17).
    assert [m.stage for m in story.sent(run_events.StageStarted)] == ["rescue"]
    assert not story.sent(run_events.StageCompleted)


def test_a_fatal_error_skips_the_retries() -> None:
    story = Story(FAULT_PATH)
    story.when(start())
    story.when(fail("push", retryable=False, error="400 bad request"))
    assert story.step("push").error == "400 bad request"
    assert story.state.stage == "rescue"


NO_FAULT_PATH = definition(
    """
name: test
stages:
  - name: sync
    steps:
      - {name: push, action: http, retries: {max_attempts: 1}}
      - {name: pull, action: http, retries: {max_attempts: 1}}
  - name: next
    steps: [{name: close, action: noop}]
"""
)


def in_error() -> Story:
    story = Story(NO_FAULT_PATH)
    story.when(start())
    story.when(fail("push", error="503"))
    return story


def test_without_a_fault_path_a_failed_step_puts_the_run_in_error() -> None:
    story = in_error()
    assert story.state.status is RunStatus.ERROR
    assert story.state.error == "sync.push: 503"
    [errored] = story.sent(run_events.RunErrored)
    assert (errored.stage, errored.step, errored.error) == ("sync", "push", "503")
    assert story.step("pull").status is StepStatus.IN_PROGRESS  # other work goes on
    story.when(done("pull"))  # and its outcome is kept
    assert story.step("pull").status is StepStatus.COMPLETED
    assert story.state.status is RunStatus.ERROR


def test_an_operator_retry_gives_the_failed_step_one_more_attempt() -> None:
    story = in_error()
    story.when(cmd.RetryStep(step="push", requested_by="ops"))
    assert story.state.status is RunStatus.RUNNING
    assert story.dispatched() == [("push", 2)]
    story.when(done("pull"))
    story.when(done("push", attempt=2))
    assert story.state.stage == "next"


def test_an_operator_skip_lets_the_stage_go_on_with_the_given_outputs() -> None:
    story = in_error()
    story.when(done("pull"))
    story.when(cmd.SkipStep(step="push", requested_by="ops", outputs={"id": 1}))
    assert story.step("push").status is StepStatus.SKIPPED
    assert story.step("push").outputs == {"id": 1}
    assert story.step("push").completed_by == "ops"
    assert story.state.stage == "next"


def test_an_operator_can_cancel_a_run_in_error() -> None:
    story = in_error()
    story.when(cmd.CancelRun(reason="given up", requested_by="ops"))
    assert story.state.status is RunStatus.CANCELED
    assert story.state.error == "given up"
    assert story.step("pull").status is StepStatus.CANCELED
    assert story.refused(cmd.RetryStep(step="push")).startswith("the run is canceled")


def test_resuming_a_run_in_error_checks_it_again() -> None:
    """Regression: resume was refused in Error, though the docs and the run table allow it.

    Resuming does not hide the failure: the step is still failed, so the run is back in
    Error.  (After a migration to a fixed version, resuming is what lets the run go on:
    see test_core_migration.)
    """
    story = in_error()
    story.when(cmd.ResumeRun(requested_by="ops"))
    assert story.sent(run_events.RunResumed)
    assert story.sent(run_events.RunErrored)
    assert story.state.status is RunStatus.ERROR
    assert story.state.error == "sync.push: 503"


def test_two_failures_in_a_stage_each_need_the_operator() -> None:
    story = in_error()
    story.when(fail("pull", error="timeout"))
    assert story.state.error == "sync.push: 503"
    story.when(cmd.SkipStep(step="push"))
    assert story.state.status is RunStatus.ERROR
    assert story.state.error == "sync.pull: timeout"


def test_an_optional_step_that_fails_does_not_stop_the_stage() -> None:
    optional = definition(
        """
name: test
stages:
  - name: only
    steps:
      - {name: nice, action: http, optional: true, retries: {max_attempts: 1}}
      - {name: must, action: noop}
"""
    )
    story = Story(optional)
    story.when(start())
    story.when(fail("nice"))
    assert story.state.status is RunStatus.RUNNING
    story.when(done("must"))
    assert story.state.status is RunStatus.COMPLETED
    assert story.step("nice").status is StepStatus.FAILED


def test_operator_commands_name_a_step_of_the_current_stage() -> None:
    story = in_error()
    assert "not in the current stage" in story.refused(cmd.SkipStep(step="close"))
    assert "no step" in story.refused(cmd.RetryStep(step="nope"))
    assert "only a failed step" in story.refused(cmd.RetryStep(step="pull"))


def test_skipping_a_step_of_a_finished_run_is_refused() -> None:
    """Regression: a canceled run's pending step could still be skipped."""
    pending = definition(
        """
name: test
stages:
  - name: only
    steps:
      - {name: a, action: noop}
      - {name: b, action: noop, after: [a]}
"""
    )
    story = Story(pending)
    story.when(start())
    story.when(cmd.CancelRun())
    assert story.refused(cmd.SkipStep(step="b")) == "the run is canceled"


BAD_TEMPLATE = definition(
    """
name: test
inputs: {n: {type: integer, default: 0}}
stages:
  - name: only
    steps:
      - name: call
        action: http
        retries: {max_attempts: 3, backoff: 1s}
        inputs: {ratio: "${100 / vars.n}"}
"""
)


def test_an_input_that_cannot_be_filled_in_puts_the_run_in_error_without_starting() -> None:
    """Regression: the step used to be marked started with no request sent, for ever."""
    story = Story(BAD_TEMPLATE)
    story.when(start())
    assert story.state.status is RunStatus.ERROR
    assert story.step("call").status is StepStatus.PENDING
    assert story.sent(StepRequested) == []
    assert "expression failed" in str(story.state.error)
