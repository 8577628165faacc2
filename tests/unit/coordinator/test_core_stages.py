"""Stages: in order, entry conditions that skip, exit conditions, decisions after a stage."""

from __future__ import annotations

from coordinator_builders import Story, definition, done, start, verdict

from contracts.events import runs as run_events
from contracts.events.workitems import WorkItemCancelRequested
from services.stage_coordinator.core.state import RunStatus, StageStatus, StepStatus
from services.stage_coordinator.core.transition import MAX_STAGE_ENTRIES

THREE = definition(
    """
name: test
stages:
  - name: first
    steps: [{name: a, action: noop}]
  - name: second
    steps: [{name: b, action: noop}]
  - name: third
    steps: [{name: c, action: noop}]
"""
)


def lifecycle(story: Story) -> list[tuple[str, dict[str, object]]]:
    """The runs.events messages of the last transition: type and stage fields."""
    assert story.last is not None
    return [(type(m).__name__, m.model_dump(include={"stage", "next_stage"}))
            for m in story.last.messages if isinstance(m, run_events.RunEvent)]


def test_stages_run_one_at_a_time_in_order_then_the_run_completes() -> None:
    story = Story(THREE)
    story.when(start())
    assert story.dispatched() == [("a", 1)]
    assert [s.status for s in story.state.stages.values()] == [
        StageStatus.IN_PROGRESS, StageStatus.PENDING, StageStatus.PENDING,
    ]  # fmt: skip
    # One message per move (decision 17): the start names the stage it entered...
    assert lifecycle(story) == [("RunStarted", {"stage": "first"})]

    story.when(done("a"), after=30)
    assert story.dispatched() == [("b", 1)]
    assert story.stage("first").status is StageStatus.COMPLETED
    assert story.state.stage == "second"
    # ... a completed stage names the next one...
    assert lifecycle(story) == [("StageCompleted", {"stage": "first", "next_stage": "second"})]
    assert story.sent(run_events.StageCompleted)[0].duration_seconds == 30

    story.when(done("b"))
    story.when(done("c"), after=60)
    assert story.state.status is RunStatus.COMPLETED
    assert story.state.finished_at == story.now
    # ... and the run's completion ends the last stage.
    assert lifecycle(story) == [("RunCompleted", {"stage": "third"})]
    [completed] = story.sent(run_events.RunCompleted)
    assert completed.duration_seconds == 90
    assert completed.stage_duration_seconds == 60


ENTRY = definition(
    """
name: test
record_fields: {amount: number}
stages:
  - name: intake
    steps: [{name: a, action: noop}]
  - name: review
    entry: "record.amount > 1000"
    steps: [{name: check, kind: approval, assignee: {user: mia}}]
    decisions: [{when: "true", end: true}]
  - name: book
    steps: [{name: b, action: noop}]
"""
)


def test_a_stage_whose_entry_condition_is_false_is_skipped_with_its_decisions() -> None:
    story = Story(ENTRY)
    story.when(start(record={"amount": 10}))
    story.when(done("a"))
    assert story.stage("review").status is StageStatus.SKIPPED
    assert story.step("check").status is StepStatus.PENDING  # its steps never ran
    assert lifecycle(story) == [
        ("StageSkipped", {"stage": "review"}),
        ("StageCompleted", {"stage": "intake", "next_stage": "book"}),
    ]
    assert story.dispatched() == [("b", 1)]  # and its `end` decision was not looked at
    story.when(done("b"))
    assert story.state.status is RunStatus.COMPLETED


def test_a_stage_whose_entry_condition_holds_is_entered() -> None:
    story = Story(ENTRY)
    story.when(start(record={"amount": 5000}))
    story.when(done("a"))
    assert story.state.stage == "review"
    assert story.dispatched() == [("check", 1)]


def test_when_every_stage_is_skipped_the_run_completes_at_once() -> None:
    skipped = definition(
        """
name: test
inputs: {go: {type: boolean, default: false}}
stages:
  - {name: only, entry: "vars.go", steps: [{name: a, action: noop}]}
"""
    )
    story = Story(skipped)
    story.when(start())
    assert story.state.status is RunStatus.COMPLETED
    assert story.state.stage is None
    assert story.stage("only").status is StageStatus.SKIPPED
    assert lifecycle(story) == [("RunStarted", {"stage": None}),
                                ("StageSkipped", {"stage": "only"}),
                                ("RunCompleted", {"stage": None})]


EXIT = definition(
    """
name: test
stages:
  - name: vote
    exit: "steps.ann.decision == 'approved' || steps.bob.decision == 'approved'"
    steps:
      - {name: ann, kind: approval, assignee: {user: ann}}
      - {name: bob, kind: approval, assignee: {user: bob}}
    decisions:
      - {when: "steps.ann.decision != 'approved' && steps.bob.decision != 'approved'", end: true}
  - name: after
    steps: [{name: ship, action: noop}]
"""
)


def test_the_exit_condition_finishes_the_stage_and_cancels_what_still_runs() -> None:
    story = Story(EXIT)
    story.when(start())
    story.when(verdict("bob", "approved"))
    assert story.stage("vote").status is StageStatus.COMPLETED
    assert story.step("ann").status is StepStatus.CANCELED
    assert [m.step for m in story.sent(WorkItemCancelRequested)] == ["ann"]
    assert story.dispatched() == [("ship", 1)]


def test_a_stage_whose_steps_all_finished_ends_even_if_its_exit_never_held() -> None:
    """Regression: such a stage used to leave the run running with nothing to wait for."""
    story = Story(EXIT)
    story.when(start())
    story.when(verdict("ann", "rejected"))
    assert story.state.stage == "vote"  # bob may still approve
    story.when(verdict("bob", "rejected"))
    assert story.stage("vote").status is StageStatus.COMPLETED
    assert story.state.status is RunStatus.COMPLETED  # the `end` decision was taken


DECISIONS = definition(
    """
name: test
stages:
  - name: draft
    steps: [{name: write, kind: interactive, assignee: {user: ann}}]
  - name: review
    steps: [{name: ok, kind: approval, assignee: {user: bob}}]
    decisions:
      - {when: "steps.ok.decision == 'rejected'", goto: draft}
      - {when: "steps.ok.comment == 'ship it now'", end: true}
  - name: polish
    steps: [{name: tidy, action: noop}]
"""
)


def test_a_decision_sends_the_run_back_and_the_stage_starts_over() -> None:
    story = Story(DECISIONS)
    story.when(start())
    story.when(done("write", text="v1"))
    story.when(verdict("ok", "rejected"))
    assert story.state.stage == "draft"
    assert story.stage("draft").visits == 2
    assert story.stage("review").status is StageStatus.COMPLETED
    assert story.dispatched() == [("write", 2)]  # a new attempt: a new work item
    assert story.step("write").outputs == {}  # the earlier outputs are gone with the visit
    story.when(done("write", attempt=2, text="v2"))
    assert story.dispatched() == [("ok", 2)]


def test_a_decision_can_end_the_run_before_later_stages() -> None:
    story = Story(DECISIONS)
    story.when(start())
    story.when(done("write"))
    story.when(verdict("ok", "approved", comment="ship it now"))
    assert story.state.status is RunStatus.COMPLETED
    assert story.stage("polish").status is StageStatus.PENDING


def test_without_a_decision_that_holds_the_run_goes_to_the_next_stage() -> None:
    story = Story(DECISIONS)
    story.when(start())
    story.when(done("write"))
    story.when(verdict("ok", "approved"))
    assert story.state.stage == "polish"


def test_a_loop_that_never_ends_puts_the_run_in_error() -> None:
    """Regression: hitting the bound on stage entries used to reject the outcome instead."""
    loop = definition(
        """
name: test
stages:
  - name: again
    steps: [{name: a, action: noop}]
    decisions: [{goto: again}]
"""
    )
    story = Story(loop)
    story.when(start())
    for attempt in range(1, MAX_STAGE_ENTRIES):
        story.when(done("a", attempt=attempt))
    assert story.state.status is RunStatus.RUNNING
    story.when(done("a", attempt=MAX_STAGE_ENTRIES))
    assert story.state.status is RunStatus.ERROR
    assert "looping" in str(story.state.error)
    assert story.step("a").status is StepStatus.COMPLETED  # the outcome was kept
    [errored] = story.sent(run_events.RunErrored)
    assert errored.stage == "again"


def test_a_loop_without_any_work_puts_the_new_run_in_error() -> None:
    spin = definition(
        """
name: test
inputs: {go: {type: boolean, default: false}}
stages:
  - name: spin
    steps: [{name: a, action: noop, when: "vars.go"}]
    decisions: [{goto: spin}]
"""
    )
    story = Story(spin)
    story.when(start())
    assert story.state.status is RunStatus.ERROR
    assert story.state.stage == "spin"
