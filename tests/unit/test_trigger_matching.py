"""Record changes against the orchestrations that watch them: case, and changes that miss."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from contracts import Envelope
from contracts.envelope import new_event
from contracts.events.commands import StartRun
from contracts.events.records import RecordChanged
from services.trigger.core.matching import Match, match, missed
from services.trigger.handler import RecordChangeHandler
from shared.definitions import Definition
from shared.definitions.loading import load_definition
from shared.definitions.validate import validate_definition

ROOT = Path(__file__).resolve().parents[2]
ACTIONS = frozenset({"http", "set_variables", "noop", "publish_record_update", "wait"})


def example(name: str) -> Definition:
    text = (ROOT / "examples" / name).read_text()
    parsed = validate_definition(load_definition(text, fmt="yaml"), known_actions=ACTIONS)
    return parsed.model_copy(update={"version": 1})  # as published


def sample_change() -> RecordChanged:
    """The shipped sample: an ``employee`` (lower case) created upstream."""
    sample = json.loads((ROOT / "contracts" / "samples" / "RecordChanged.v1.json").read_text())
    return RecordChanged.model_validate(sample["payload"])


def test_the_sample_change_starts_onboarding_whatever_the_case_of_its_object_type() -> None:
    onboarding = example("onboarding.yaml")
    change = sample_change()
    assert change.object_type == "employee" and onboarding.trigger.record is not None
    assert onboarding.trigger.record.object == "Employee"

    started = match(change, "e-1", [onboarding])

    assert len(started) == 1 and isinstance(started[0], Match)
    assert started[0].command.record.object_type == "Employee"  # the definition's spelling


def test_a_miss_says_which_filter_stopped_it() -> None:
    onboarding, quotes = example("onboarding.yaml"), example("quote_approval.yaml")
    change = sample_change()
    unknown = change.model_copy(update={"object_type": "Invoice"})
    deleted = change.model_copy(update={"change": "deleted"})

    assert missed(unknown, [onboarding, quotes]).describe(unknown) == (
        "no orchestration watches 'Invoice' records (watched: Employee, Quote)")
    assert missed(deleted, [onboarding]).reason == "no_trigger_for_change"


class Published:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def publish(self, envelopes: Any) -> None:
        self.envelopes.extend(envelopes)


class Fixed:
    def __init__(self, definitions: list[Definition]) -> None:
        self.definitions = definitions

    async def current(self) -> list[Definition]:
        return self.definitions


async def test_a_change_that_starts_nothing_is_counted_by_object_type_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry, published = CollectorRegistry(), Published()
    handler = RecordChangeHandler(Fixed([example("onboarding.yaml")]),  # type: ignore[arg-type]
                                  published, registry)  # type: ignore[arg-type]
    invoice = sample_change().model_copy(update={"object_type": "Invoice"})
    envelopes = [new_event(invoice, producer="erp", key="Invoice:1"),
                 new_event(sample_change(), producer="hr", key="employee:E-1042")]

    with caplog.at_level(logging.DEBUG, logger="baton.trigger"):
        await handler(envelopes)

    assert [type(e.payload) for e in published.envelopes] == [StartRun]
    assert registry.get_sample_value("baton_trigger_unmatched_total", {
        "object_type": "Invoice", "reason": "no_trigger_for_object"}) == 1
    assert registry.get_sample_value("baton_trigger_unmatched_total", {
        "object_type": "employee", "reason": "no_trigger_for_object"}) is None
    assert [r.getMessage() for r in caplog.records] == [
        "record change created Invoice/E-1042 started nothing: no orchestration watches "
        "'Invoice' records (watched: Employee)"]
