"""A run's document holds the run as its dump would, field for field and in the same order
(the store builds it from the run's fields without a dump), and reads back as the run."""

from __future__ import annotations

from typing import Any

from coordinator_builders import Story, definition, done, fail, fire, start

from services.stage_coordinator.core.state import Run
from services.stage_coordinator.store import (
    PACKED_STATE,
    SHELL_FIELDS,
    StoredRun,
    from_document,
    to_document,
    unpacked,
)

ORCHESTRATION = definition(
    """
name: test
stages:
  - name: first
    steps:
      - {name: call, action: http, retries: {max_attempts: 3}}
      - {name: note, action: set_variables}
  - name: second
    steps: [{name: last, action: noop}]
"""
)


def _as_dumped(run: Run) -> dict[str, Any]:
    return run.model_dump(mode="python", exclude={"id"})


def _check(run: Run) -> None:
    doc = to_document(StoredRun(run=run, applied=["m1"]))
    dumped = _as_dumped(run)
    assert set(doc) <= set(dumped) | set(SHELL_FIELDS)
    outside = [k for k in doc if k in dumped]
    assert outside == [k for k in dumped if k not in PACKED_STATE]  # same order
    opened = unpacked(doc)
    assert {k: opened[k] for k in dumped} == dumped
    for name in ("stages", "steps"):  # the states' fields in their order
        assert [list(s) for s in opened[name].values()] == [list(s) for s in dumped[name].values()]
    assert from_document(doc).run == run


def test_a_run_document_is_the_run_dumped_at_every_step_of_a_story() -> None:
    story = Story(ORCHESTRATION)
    story.when(start(record={"owner": "ann"}, amount=3))
    _check(story.state)
    story.when(done("note", total=7))
    story.when(fail("call"))  # waiting for its retry: a timer
    assert story.state.timers
    _check(story.state)
    story.when(fire(story.timer("call")), after=5)
    story.when(done("call", attempt=2, answer={"nested": [1, 2]}))
    _check(story.state)
    story.when(done("last"))
    _check(story.state)

