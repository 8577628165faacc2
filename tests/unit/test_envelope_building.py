"""new_event builds an envelope without validating again what is valid already, and
validates (and refuses) as before whatever it cannot tell so; encode writes the bytes the
model's own JSON dump gives."""

from __future__ import annotations

import glob
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from contracts import Envelope, encode, new_event, parse
from contracts.events.runs import StageSkipped
from contracts.events.steps import StepRequested

AT = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
STAGE = StageSkipped(orchestration="o", version=1, stage="review")


def validated(envelope: Envelope) -> Envelope:
    """The envelope pydantic builds of the same fields."""
    return Envelope(**envelope.__dict__)


def cause() -> Envelope:
    return parse(encode(new_event(STAGE, producer="test", run_id="run-1", occurred_at=AT)))


@pytest.mark.parametrize("kwargs", [
    {"run_id": "run-1", "occurred_at": AT},
    {"run_id": "run-1", "occurred_at": AT.astimezone(timezone(timedelta(hours=-5)))},
    {"run_id": "run-1", "key": "record:1", "event_id": "e" * 100, "correlation_id": "c"},
    {"cause": "from a parsed message"},
    {"cause": "from a parsed message", "run_id": "other", "correlation_id": "kept"},
])
def test_an_envelope_built_as_is_equals_the_validated_one(kwargs: dict[str, Any]) -> None:
    if kwargs.get("cause"):
        kwargs = {**kwargs, "cause": cause()}
    envelope = new_event(STAGE, producer="test", **kwargs)
    again = validated(envelope)
    assert envelope == again
    assert envelope.model_fields_set == again.model_fields_set
    assert list(envelope.__dict__) == list(again.__dict__)
    assert repr(envelope) == repr(again)
    assert encode(envelope) == encode(again)
    assert parse(encode(envelope)) == envelope


@pytest.mark.parametrize("kwargs", [
    {"producer": "p" * 101},
    {"producer": ""},
    {"event_id": "e" * 101},
    {"run_id": "r" * 101},
    {"key": "k" * 301},
    {"correlation_id": "c" * 101},
    {"occurred_at": datetime(2026, 3, 1, 9, 0)},  # no zone
])
def test_what_validation_refuses_is_refused_as_before(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        new_event(STAGE, **{"producer": "test", "run_id": "run-1", "occurred_at": AT, **kwargs})


def test_a_value_of_another_type_is_validated_as_before() -> None:
    class Name(str):
        pass

    envelope = new_event(STAGE, producer=Name("test"), run_id="run-1", occurred_at=AT)
    assert envelope == validated(envelope)
    assert type(envelope.producer) is type(validated(envelope).producer)


def test_encode_writes_what_the_json_dump_of_the_model_gives() -> None:
    samples = [parse(Path(path).read_bytes())
               for path in sorted(glob.glob("contracts/samples/*.json"))]
    request = StepRequested(orchestration="o", version=1, stage="one", step="prepare",
                            attempt=2, action="noop", inputs={"é": [1, 2.5, None, "\u2028"]},
                            idempotency_key="run-1:prepare:2", operation_key="run-1:prepare")
    samples.append(new_event(request, producer="test", run_id="run-1"))
    assert len(samples) > 50
    for envelope in samples:
        assert encode(envelope) == envelope.model_dump_json().encode()
