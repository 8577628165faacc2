"""Run control (suspend, resume, cancel) and redelivered messages.

The shell drops a message whose event id it has applied already (``applied`` in the run
document).  The core is the second line: a message delivered again after it was applied
is refused and changes nothing, whatever its kind.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from coordinator_builders import Story, definition, done, fail, fire, start, verdict

from contracts.envelope import Payload
from contracts.events import commands as cmd
from contracts.events import runs as run_events
from contracts.events.workitems import WorkItemCancelRequested
from services.stage_coordinator.core.state import RunStatus, StageStatus, StepStatus

FLOW = definition(
    """
name: test
stages:
  - name: first
    steps:
      - {name: fetch, action: http, retries: {max_attempts: 3}}
      - {name: review, kind: approval, assignee: {user: mia}}
      - {name: later, action: noop, after: [fetch]}
  - name: second
    steps: [{name: close, action: noop}]
"""
)


def running() -> Story:
    story = Story(FLOW)
    story.when(start())
    return story


def test_a_suspended_run_records_outcomes_but_starts_nothing_until_resumed() -> None:
    story = running()
    story.when(cmd.SuspendRun(reason="audit"))
    assert story.state.status is RunStatus.SUSPENDED
    assert story.sent(run_events.RunSuspended)
    story.when(done("fetch"))
    assert story.step("fetch").status is StepStatus.COMPLETED
    assert story.dispatched() == []  # `later` waits for the resume
    story.when(cmd.ResumeRun())
    assert story.state.status is RunStatus.RUNNING
    assert story.dispatched() == [("later", 1)]


def test_suspend_and_resume_only_apply_where_the_run_table_allows() -> None:
    story = running()
    assert story.refused(cmd.ResumeRun()).endswith("this one is running")
    story.when(cmd.SuspendRun())
    assert story.refused(cmd.SuspendRun()) == "a suspended run cannot become suspended"
    story.when(cmd.CancelRun())
    assert story.refused(cmd.ResumeRun()).startswith("only a suspended run")


def test_cancel_withdraws_work_items_and_discontinues_the_stage() -> None:
    """Regression: the canceled run's stage stayed in progress with pending steps."""
    story = running()
    story.when(cmd.CancelRun(reason="duplicate", requested_by="ops"))
    assert story.state.status is RunStatus.CANCELED
    assert [m.step for m in story.sent(WorkItemCancelRequested)] == ["review"]
    assert story.sent(run_events.RunCanceled)[0].reason == "duplicate"
    assert story.stage("first").status is StageStatus.DISCONTINUED
    assert story.statuses("fetch", "review", "later") == {
        "fetch": "canceled", "review": "canceled", "later": "skipped",
    }  # fmt: skip
    assert story.state.finished_at == story.now
    assert "cannot be canceled" in story.refused(cmd.CancelRun())


def test_a_late_outcome_of_a_canceled_run_is_refused() -> None:
    story = running()
    story.when(cmd.CancelRun())
    assert "stale outcome" in story.refused(done("fetch"))


def _after_retry(story: Story) -> Payload:
    story.when(fail("fetch"))
    return fire(story.timer("fetch"))


REDELIVERED: dict[str, Callable[[Story], Payload]] = {
    "StartRun": lambda story: start(),
    "StepCompleted": lambda story: done("fetch"),
    "approval": lambda story: verdict("review", "approved"),
    "retryable StepFailed": lambda story: fail("fetch"),
    "fatal StepFailed": lambda story: fail("fetch", retryable=False),
    "TimerFired": _after_retry,
    "SuspendRun": lambda story: cmd.SuspendRun(),
    "CancelRun": lambda story: cmd.CancelRun(),
    "SkipStep": lambda story: cmd.SkipStep(step="later"),
    "RetryStep": lambda story: (story.when(fail("fetch", retryable=False)),
                                cmd.RetryStep(step="fetch"))[1],
}  # fmt: skip


@pytest.mark.parametrize("kind", REDELIVERED)
def test_a_message_delivered_again_is_refused_and_changes_nothing(kind: str) -> None:
    story = running()
    message = REDELIVERED[kind](story)
    if kind != "StartRun":
        story.when(message)
    state, history = story.state.model_dump(), len(story.history)
    story.refused(message)
    assert story.state.model_dump() == state
    assert len(story.history) == history


def test_resume_delivered_again_is_refused() -> None:
    story = running()
    story.when(cmd.SuspendRun())
    story.when(cmd.ResumeRun())
    story.refused(cmd.ResumeRun())


def test_a_message_for_a_run_that_does_not_exist_is_refused() -> None:
    story = Story(FLOW)
    assert story.refused(done("fetch")) == "StepCompleted for unknown run r1"
