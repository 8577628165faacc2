"""Who takes part in a run: what the run document records for who may see it."""

from __future__ import annotations

from coordinator_builders import Story, definition, done, start

from contracts.events.steps import StepCompleted
from contracts.events.workitems import (
    WorkItemAssigned,
    WorkItemClaimed,
    WorkItemCommented,
    WorkItemDelegated,
    WorkItemReassigned,
)
from services.stage_coordinator.core import events as ev
from services.stage_coordinator.core.participants import NO_ONE_NEW

PEOPLE = definition(
    """
name: test
stages:
  - name: review
    steps:
      - {name: intake, kind: interactive, assignee: {queue: hr}}
      - {name: owner_check, kind: interactive, assignee: {record_field: record.owner}}
      - {name: sign_off, kind: approval, assignee: {manager_of: record.owner}}
      - {name: payroll, action: noop}
"""
)


def held(story: Story) -> list[str]:
    return list(story.state.participants)


def test_the_starter_and_whom_each_work_item_is_for_are_recorded_as_the_run_starts() -> None:
    story = Story(PEOPLE)
    story.when(start(record={"owner": "omar"}))
    # The manager is known only to assignment; a background step names no one.
    assert held(story) == ["user:ann", "queue:hr", "user:omar"]


def test_assignment_names_the_manager_and_later_holders_once_each() -> None:
    story = Story(PEOPLE)
    story.when(start(record={"owner": "omar"}))
    to_manager = WorkItemAssigned(work_item_id="w3", step="sign_off", assignee_kind="user",
                                  assignee="maya")
    joined = story.when(to_manager)
    assert [type(e) for e in joined.events] == [ev.ParticipantsJoined]
    assert held(story)[-1] == "user:maya"
    # A redelivery, or a holder the run knows already: refused, so nothing is written.
    assert story.refused(to_manager) == NO_ONE_NEW
    story.when(WorkItemReassigned(work_item_id="w3", step="sign_off", actor="dana",
                                  assignee_kind="group", assignee="legal"))
    story.when(WorkItemDelegated(work_item_id="w3", step="sign_off", actor="maya",
                                 assignee_kind="group", assignee="legal", delegate="dev"))
    assert held(story)[-2:] == ["group:legal", "user:dev"]
    # A claim is by a member of the queue the run knows; a comment gives the item to no one.
    for other in (WorkItemClaimed(work_item_id="w1", step="intake", actor="hana",
                                  assignee_kind="queue", assignee="hr"),
                  WorkItemCommented(work_item_id="w1", step="intake", actor="hana")):
        assert "does not handle" in story.refused(other)


def test_whoever_completes_an_item_is_recorded() -> None:
    story = Story(PEOPLE)
    story.when(start(record={"owner": "omar"}))
    story.when(StepCompleted(step="intake", attempt=1, completed_by="hana"))
    story.when(done("payroll"))  # the system is nobody
    assert held(story) == ["user:ann", "queue:hr", "user:omar", "user:hana"]
