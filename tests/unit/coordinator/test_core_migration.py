"""Migrating a run to another version, and the coordinator agreeing with check_migration."""

from __future__ import annotations

from typing import Any

from coordinator_builders import Story, definition, done, fail, start

from contracts.events import commands as cmd
from contracts.events import runs as run_events
from services.stage_coordinator.core.state import Run, RunStatus, StageStatus, StepStatus
from shared.definitions import Definition
from shared.definitions.migration import check_migration

V1 = definition(
    """
name: test
stages:
  - name: hr
    steps: [{name: form, kind: interactive, assignee: {queue: hr}}]
  - name: it
    steps:
      - {name: laptop, kind: interactive, assignee: {group: it}}
      - {name: desk, action: noop, after: [laptop]}
      - {name: account, action: http}
  - name: done
    steps: [{name: welcome, action: noop}]
"""
)


def variant(text: str, version: int = 2) -> Definition:
    return definition(text, version)


def migrate(story: Story, to: int) -> str | None:
    """Migrate; None when accepted, else the reason for the refusal."""
    result = story.decide(cmd.MigrateRun(to_version=to, requested_by="ops"))
    return getattr(result, "reason", None)


def documented_state(run: Run) -> dict[str, Any]:
    """The run state as docs/definitions.md shows it to check_migration."""
    stage = run.stage
    return {"stage": stage, "steps": {s.name: s.status.value for s in run.steps_of(stage or "")}}


def agrees(story: Story, current: Definition, target: Definition) -> str | None:
    """Migrate, and check the refusal gives exactly check_migration's reasons."""
    issues = check_migration(current, target, documented_state(story.state))
    reason = migrate(story, target.version)
    if issues:
        assert reason == "migration refused: " + "; ".join(str(i) for i in issues)
    else:
        assert reason is None
    return reason


def in_it(*versions: Definition) -> Story:
    story = Story(V1, *versions)
    story.when(start())
    story.when(done("form"))
    return story


def test_steps_added_to_the_current_stage_start_and_removed_pending_ones_go() -> None:
    v2 = variant(
        """
name: test
stages:
  - name: hr
    steps: [{name: form, kind: interactive, assignee: {queue: hr}}]
  - name: it
    steps:
      - {name: laptop, kind: interactive, assignee: {group: it}}
      - {name: account, action: http}
      - {name: phone, action: noop}
  - name: done
    steps: [{name: welcome, action: noop}]
"""
    )
    story = in_it(v2)
    assert agrees(story, V1, v2) is None
    assert story.state.version == 2
    assert "desk" not in story.state.steps
    assert story.dispatched() == [("phone", 1)]
    assert story.sent(run_events.RunMigrated)[0].from_version == 1
    story.when(done("laptop"))
    story.when(done("account"))
    story.when(done("phone"))
    assert story.state.stage == "done"


def test_a_step_moved_to_a_later_stage_runs_there() -> None:
    """Regression: the step kept its old stage, never ran, and crashed a later decision."""
    v2 = variant(
        """
name: test
stages:
  - name: hr
    steps: [{name: form, kind: interactive, assignee: {queue: hr}}]
  - name: it
    steps:
      - {name: laptop, kind: interactive, assignee: {group: it}}
      - {name: account, action: http}
  - name: done
    steps:
      - {name: welcome, action: noop}
      - {name: desk, action: noop}
"""
    )
    story = in_it(v2)
    assert agrees(story, V1, v2) is None
    assert story.step("desk").stage == "done"
    story.when(done("laptop"))
    story.when(done("account"))
    assert sorted(story.dispatched()) == [("desk", 1), ("welcome", 1)]


def test_the_current_stage_must_exist_in_the_target() -> None:
    v2 = variant(
        """
name: test
stages:
  - name: hr
    steps: [{name: form, kind: interactive, assignee: {queue: hr}}]
  - name: provisioning
    steps: [{name: laptop, kind: interactive, assignee: {group: it}}]
"""
    )
    story = in_it(v2)
    reason = agrees(story, V1, v2)
    assert reason == (
        "migration refused: stages(it): the run is in stage 'it', which version 2 does not have"
        " (its stages: hr, provisioning)"
    )
    assert story.state.version == 1


def test_a_started_step_must_keep_its_name_kind_and_action() -> None:
    v2 = variant(
        """
name: test
stages:
  - name: hr
    steps: [{name: form, kind: interactive, assignee: {queue: hr}}]
  - name: it
    steps:
      - {name: laptop, action: noop}
      - {name: desk, action: noop, after: [laptop]}
      - {name: account, action: wait, inputs: {duration: 1h}}
  - name: done
    steps: [{name: welcome, action: noop}]
"""
    )
    story = in_it(v2)
    assert agrees(story, V1, v2) == (
        "migration refused: "
        "stages[1](it).steps(laptop).kind: step 'laptop' is in_progress as an interactive step"
        " in version 1, but version 2 makes it a background step; "
        "stages[1](it).steps(account).action: step 'account' is in_progress with action 'http'"
        " in version 1, but version 2 gives it action 'wait'"
    )


def test_a_finished_step_of_the_current_stage_must_still_be_there() -> None:
    """Regression: the coordinator let a completed step vanish; check_migration did not."""
    v2 = variant(
        """
name: test
stages:
  - name: hr
    steps: [{name: form, kind: interactive, assignee: {queue: hr}}]
  - name: it
    steps:
      - {name: laptop, kind: interactive, assignee: {group: it}}
      - {name: desk, action: noop, after: [laptop]}
  - name: done
    steps: [{name: welcome, action: noop}]
"""
    )
    story = in_it(v2)
    story.when(done("account"))
    assert agrees(story, V1, v2) is not None
    assert story.state.version == 1


def test_steps_not_started_or_outside_the_stage_may_change_kind() -> None:
    """Regression: the coordinator refused these; check_migration allows them."""
    v2 = variant(
        """
name: test
stages:
  - name: hr
    steps: [{name: form, action: noop}]
  - name: it
    steps:
      - {name: laptop, kind: interactive, assignee: {group: it}}
      - {name: desk, kind: interactive, assignee: {queue: facilities}, after: [laptop]}
      - {name: account, action: http}
  - name: done
    steps: [{name: welcome, action: noop}]
"""
    )
    story = in_it(v2)
    assert agrees(story, V1, v2) is None
    assert (story.step("form").kind, story.step("form").status) == ("background", "completed")
    story.when(done("laptop"))
    assert story.dispatched() == [("desk", 1)]
    assert story.step("desk").kind == "interactive"


def test_a_run_in_error_before_its_first_stage_moves_to_a_fixed_version_and_resumes() -> None:
    broken = definition(
        """
name: test
stages:
  - {name: only, entry: "record.amount > 10", steps: [{name: a, action: noop}]}
"""
    )
    fixed = definition(
        """
name: test
stages:
  - name: only
    entry: "has(record.amount) && record.amount > 10"
    steps: [{name: a, action: noop}]
  - {name: fallback, steps: [{name: b, action: noop}]}
""",
        version=2,
    )
    story = Story(broken, fixed)
    story.when(start(record={"other": 1}))
    assert story.state.status is RunStatus.ERROR
    assert story.state.stage is None
    assert agrees(story, broken, fixed) is None
    assert story.state.status is RunStatus.ERROR  # migrating does not resume
    story.when(cmd.ResumeRun(requested_by="ops"))
    assert story.stage("only").status is StageStatus.SKIPPED
    assert story.dispatched() == [("b", 1)]


def test_migrating_back_and_forth_never_repeats_an_attempt() -> None:
    """Regression: a step removed then added again restarted at attempt 1.

    Its idempotency key would repeat, and the step-runner would answer the new attempt
    with the stored outcome of the old one.
    """
    v2 = variant(
        """
name: test
stages:
  - name: hr
    steps: [{name: form, kind: interactive, assignee: {queue: hr}}]
  - name: it
    steps: [{name: laptop, kind: interactive, assignee: {group: it}}]
  - name: done
    steps: [{name: welcome, action: noop}]
"""
    )
    story = in_it(v2)
    story.when(fail("account", retryable=False))  # in Error, account: attempt 1, failed
    story.when(cmd.SkipStep(step="desk"))
    story.when(cmd.SkipStep(step="account"))
    assert agrees(story, V1, v2) is None  # account and desk are gone
    assert agrees(story, v2, V1) is None  # and back
    assert story.dispatched() == [("account", 2)]


def test_what_cannot_migrate_at_all() -> None:
    story = in_it()
    assert migrate(story, 9) == "version 9 of test is unknown"
    assert agrees(story, V1, V1) == "migration refused: version: the run is on version 1 already"
    story.when(cmd.CancelRun())
    assert migrate(story, 1) == "a canceled run cannot be migrated"
    assert story.step("laptop").status is StepStatus.CANCELED
