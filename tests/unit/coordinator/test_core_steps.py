"""Steps of a stage: parallel, `after`, `when`, and what later conditions and inputs see."""

from __future__ import annotations

from coordinator_builders import Story, definition, done, fail, start, verdict

from contracts.events.steps import StepRequested
from contracts.events.workitems import WorkItemRequested
from services.stage_coordinator.core.state import RunStatus, StageStatus, StepStatus

PARALLEL = definition(
    """
name: test
stages:
  - name: setup
    steps:
      - {name: laptop, kind: interactive, assignee: {group: it}}
      - {name: desk, kind: interactive, assignee: {queue: facilities}}
      - {name: payroll, action: noop}
      - {name: badge, action: noop, after: [laptop, payroll]}
  - name: next
    steps: [{name: welcome, action: noop}]
"""
)


def test_steps_without_after_start_together_and_a_step_waits_for_its_after() -> None:
    story = Story(PARALLEL)
    story.when(start())
    assert sorted(story.dispatched()) == [("desk", 1), ("laptop", 1), ("payroll", 1)]
    assert {m.kind for m in story.sent(WorkItemRequested)} == {"interactive"}

    story.when(done("payroll"))
    assert story.dispatched() == []  # badge still waits for laptop
    story.when(done("laptop"))
    assert story.dispatched() == [("badge", 1)]
    story.when(done("badge"))
    assert story.state.stage == "setup"  # desk is still open
    story.when(done("desk"))
    assert story.state.stage == "next"


def test_a_step_whose_after_step_failed_is_skipped() -> None:
    optional = definition(
        """
name: test
stages:
  - name: only
    steps:
      - {name: fetch, action: http, optional: true, retries: {max_attempts: 1}}
      - {name: use, action: noop, after: [fetch]}
"""
    )
    story = Story(optional)
    story.when(start())
    story.when(fail("fetch", retryable=False))
    assert story.statuses("fetch", "use") == {"fetch": "failed", "use": "skipped"}
    assert story.state.status is RunStatus.COMPLETED  # an optional failure lets the stage end


CONDITIONS = definition(
    """
name: test
stages:
  - name: hr
    steps:
      - name: form
        kind: interactive
        assignee: {queue: hr}
        form: {type: object, properties: {desk: {type: boolean}, day: {type: string}}}
  - name: setup
    steps:
      - {name: desk, action: noop, when: "steps.form.outputs.desk == true"}
      - {name: laptop, action: noop}
"""
)


def test_a_step_runs_only_if_its_condition_holds() -> None:
    story = Story(CONDITIONS)
    story.when(start())
    story.when(done("form", desk=True))
    assert sorted(story.dispatched()) == [("desk", 1), ("laptop", 1)]


def test_a_step_whose_condition_is_false_is_skipped_once_nothing_else_is_active() -> None:
    story = Story(CONDITIONS)
    story.when(start())
    story.when(done("form", desk=False))
    assert story.dispatched() == [("laptop", 1)]
    assert story.step("desk").status is StepStatus.PENDING  # laptop may still change things
    story.when(done("laptop"))
    assert story.step("desk").status is StepStatus.SKIPPED
    assert story.state.status is RunStatus.COMPLETED


WAITS_FOR_OUTPUT = definition(
    """
name: test
stages:
  - name: only
    steps:
      - {name: notify, action: noop, when: "steps.lookup.outputs.found == true"}
      - {name: lookup, action: http, outputs: [found]}
"""
)


def test_a_false_condition_waits_while_a_later_listed_step_still_runs() -> None:
    """Regression: a step listed before the one it depends on used to be skipped at once."""
    story = Story(WAITS_FOR_OUTPUT)
    story.when(start())
    assert story.dispatched() == [("lookup", 1)]
    assert story.step("notify").status is StepStatus.PENDING
    story.when(done("lookup", found=True))
    assert story.dispatched() == [("notify", 1)]


VARIABLES = definition(
    """
name: test
inputs:
  base_url: {type: string, default: "https://example.com"}
record_fields: {name: string}
stages:
  - name: first
    steps:
      - {name: lookup, action: http, outputs: [id]}
      - name: remember
        action: set_variables
        after: [lookup]
        inputs: {customer: "${steps.lookup.outputs.id}", note: "for ${record.name}"}
  - name: second
    entry: "vars.customer == 42"
    steps:
      - name: call
        action: http
        inputs:
          url: "${vars.base_url}/customers/${vars.customer}"
          id: "${vars.customer}"
          note: "${vars.note}"
      - name: confirm
        kind: approval
        title: "Confirm customer ${vars.customer}"
        assignee: {user: mia}
"""
)


def test_outputs_and_variables_are_seen_by_later_conditions_and_inputs() -> None:
    story = Story(VARIABLES)
    story.when(start(record={"name": "Ada"}))
    [lookup] = story.sent(StepRequested)
    assert lookup.inputs == {}
    story.when(done("lookup", id=42))
    [remember] = story.sent(StepRequested)
    assert remember.inputs == {"customer": 42, "note": "for Ada"}  # one template keeps its type
    story.when(done("remember", **remember.inputs))
    assert story.state.vars == {"base_url": "https://example.com", "customer": 42,
                                "note": "for Ada"}  # fmt: skip
    assert story.stage("second").status is StageStatus.IN_PROGRESS  # its entry saw vars
    [call] = story.sent(StepRequested)
    assert call.inputs == {
        "url": "https://example.com/customers/42", "id": 42, "note": "for Ada",
    }  # fmt: skip
    [item] = story.sent(WorkItemRequested)
    assert item.title == "Confirm customer 42"
    assert item.context["vars"]["customer"] == 42


def test_only_set_variables_outputs_become_variables() -> None:
    story = Story(VARIABLES)
    story.when(start(record={"name": "Ada"}))
    story.when(done("lookup", id=7, customer=99))
    assert "customer" not in story.state.vars
    assert story.step("lookup").outputs == {"id": 7, "customer": 99}


def test_an_approval_records_who_decided_and_exposes_the_decision_as_outputs() -> None:
    story = Story(VARIABLES)
    story.when(start(record={"name": "Ada"}))
    story.when(done("lookup", id=42))
    story.when(done("remember", customer=42, note="n"))
    story.when(done("call"))
    story.when(verdict("confirm", "approved", comment="fine"))
    confirm = story.step("confirm")
    assert (confirm.decision, confirm.comment, confirm.completed_by) == ("approved", "fine", "mia")
    assert confirm.outputs == {"decision": "approved", "comment": "fine"}
    assert story.state.status is RunStatus.COMPLETED


def test_a_step_request_carries_the_record_the_run_is_about() -> None:
    """The step-runner reads no run document: what an action needs travels in the dispatch."""
    story = Story(PARALLEL)
    story.when(start(record={"owner": "ann"}))
    (request,) = story.sent(StepRequested)
    assert request.record_key == "Thing:1"

    unrelated = Story(PARALLEL)
    unrelated.when(start())
    assert [r.record_key for r in unrelated.sent(StepRequested)] == [None]


def test_a_work_item_request_names_who_started_the_run() -> None:
    """The starter is told when their run's work is done (assignment adds them)."""
    story = Story(PARALLEL)
    story.when(start())
    assert {m.started_by for m in story.sent(WorkItemRequested)} == {"ann"}
