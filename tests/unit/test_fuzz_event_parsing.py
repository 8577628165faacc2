"""Fuzzing the event parser: whatever arrives on a topic, ``parse`` returns an envelope or
raises ContractError with a reason (what the consumers dead-letter), never anything else,
and quickly.  An envelope it returns can be encoded again (published, dead-lettered,
stored): nothing it accepts breaks the services further on.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import bson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from contracts import ContractError, Envelope, encode, parse
from contracts.registry import LATEST, MAX_DEPTH, MAX_MESSAGE_BYTES

SAMPLES = sorted(Path(__file__).resolve().parents[2].joinpath("contracts", "samples").glob(
    "*.json"))
SAMPLE_DATA = [json.loads(p.read_text(encoding="utf-8")) for p in SAMPLES]
# CPU seconds of this process (a busy machine stretches wall-clock time, not this): far
# more than any message needs (a 1 MB one takes ~10 ms).
SLOW = 2.0
FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def outcome(raw: bytes) -> Envelope | ContractError:
    """Parse; only ContractError may escape, in bounded time, with a reason."""
    started = time.process_time()
    try:
        envelope: Envelope | ContractError = parse(raw)
    except ContractError as exc:
        assert str(exc).strip(), "a ContractError must say why"
        envelope = exc
    took = time.process_time() - started
    assert took < SLOW, f"parsing {len(raw)} bytes took {took:.2f}s of CPU"
    if isinstance(envelope, Envelope):
        again = parse(encode(envelope))  # what the services publish, store and dead-letter
        assert again.event_id == envelope.event_id and again.type == envelope.type
        as_stored = envelope.model_dump(mode="python")
        bson.encode(as_stored)  # MongoDB can hold it (64-bit integers, valid UTF-8)
        json.dumps(as_stored, allow_nan=False, default=str)  # and the HTTP APIs can show it
    return envelope


# --- arbitrary input ----------------------------------------------------------------------

JSON_SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                | st.text(max_size=50))
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=5),
    max_leaves=15,
)
KEYS = st.sampled_from(["event_id", "type", "schema_version", "occurred_at", "run_id", "key",
                        "correlation_id", "causation_id", "producer", "payload"])


@FUZZ
@given(st.binary(max_size=2000))
def test_arbitrary_bytes(raw: bytes) -> None:
    outcome(raw)


@FUZZ
@given(JSON)
def test_arbitrary_json(data: Any) -> None:
    outcome(json.dumps(data).encode())


@FUZZ
@given(st.dictionaries(KEYS, JSON_SCALARS | JSON, max_size=10), st.sampled_from(sorted(LATEST)),
       st.integers(min_value=-3, max_value=5))
def test_arbitrary_envelope_shaped_json(data: dict[str, Any], type_: str, version: int) -> None:
    outcome(json.dumps({**data, "type": type_, "schema_version": version}).encode())


@FUZZ
@given(st.sampled_from(SAMPLE_DATA), st.binary(min_size=1, max_size=20), st.data())
def test_sample_bytes_with_garbage_spliced_in(sample: dict[str, Any], junk: bytes,
                                              data: st.DataObject) -> None:
    raw = json.dumps(sample).encode()
    at = data.draw(st.integers(min_value=0, max_value=len(raw)))
    cut = data.draw(st.integers(min_value=0, max_value=10))
    outcome(raw[:at] + junk + raw[at + cut:])


# --- mutated golden samples ---------------------------------------------------------------

def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place inside a sample (dict keys and list indexes), outermost first."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


def _at(value: Any, place: tuple[Any, ...]) -> Any:
    for part in place:
        value = value[part]
    return value


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = {"n": value} if level % 2 else [value]
    return value


WRONG_VALUES = st.sampled_from([
    None, True, False, 0, -1, "\ud800", "ok\udfff", 2**63, -(2**63) - 1, 10**30, 1.5, -0.0,
    1e308, "", " ",
    "x" * 5000, "\u0000", "\u202e\u2066hostile", "💥" * 100, "' OR 1=1 --", "${{7*7}}",
    "{{ config }}", "__import__('os')", "$where", "a.b.c", [], [None], {}, {"$gt": ""},
    {"__class__": {"__init__": 1}}, "2025-02-30T25:61:00Z", "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+23:59",
]) | JSON_SCALARS | st.builds(nested, st.integers(min_value=1, max_value=300))


def mutate(sample: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    doc = copy.deepcopy(sample)
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        places = paths(doc)
        if not places:
            break
        place = data.draw(st.sampled_from(places))
        parent = doc
        for part in place[:-1]:
            parent = parent[part]
        last = place[-1]
        action = data.draw(st.sampled_from(["drop", "add", "replace", "huge", "deep"]))
        if action == "drop":
            del parent[last]
        elif action == "add" and isinstance(parent, dict):
            parent[data.draw(st.text(min_size=1, max_size=20))] = drawn(data)
        elif action == "huge":
            parent[last] = "A" * data.draw(st.integers(min_value=1, max_value=MAX_MESSAGE_BYTES))
        elif action == "deep":
            parent[last] = nested(data.draw(st.integers(min_value=MAX_DEPTH - 5,
                                                        max_value=MAX_DEPTH + 200)))
        else:
            parent[last] = drawn(data)
    return doc


def drawn(data: st.DataObject) -> Any:
    """A wrong value of its own: the sampled ones are shared, and a later mutation of this
    document may write into it (hypothesis then sees its strategy change under it)."""
    return copy.deepcopy(data.draw(WRONG_VALUES))


@FUZZ
@given(st.sampled_from(SAMPLE_DATA), st.data())
def test_mutated_golden_samples(sample: dict[str, Any], data: st.DataObject) -> None:
    outcome(json.dumps(mutate(sample, data)).encode())


FREE_FORM = [(sample, place) for sample in SAMPLE_DATA for place in paths(sample["payload"])
             if isinstance(_at(sample["payload"], place), dict)]


@FUZZ
@given(st.sampled_from(FREE_FORM), st.text(min_size=1, max_size=20), WRONG_VALUES)
def test_hostile_values_inside_objects(where: tuple[dict[str, Any], tuple[Any, ...]], key: str,
                                      value: Any) -> None:
    """Objects are where free-form data lives (inputs, outputs, record fields, forms)."""
    sample, place = where
    doc = copy.deepcopy(sample)
    _at(doc["payload"], place)[key] = value
    outcome(json.dumps(doc).encode())


@FUZZ
@given(st.sampled_from(SAMPLE_DATA),
       st.one_of(st.text(max_size=200), st.sampled_from(sorted(LATEST))),
       st.one_of(st.integers(), st.text(max_size=5), st.none(), st.booleans(), st.floats()))
def test_unknown_types_and_versions(sample: dict[str, Any], type_: str, version: Any) -> None:
    doc = {**sample, "type": type_, "schema_version": version}
    result = outcome(json.dumps(doc).encode())
    if isinstance(result, Envelope):  # only a published (type, version) gets through
        assert type_ in LATEST and isinstance(version, int) and 1 <= version <= LATEST[type_]


# --- the bugs the fuzzing found (regressions) ---------------------------------------------

def reason(raw: bytes) -> str:
    result = outcome(raw)
    assert isinstance(result, ContractError), f"accepted: {result!r}"
    return str(result)


def start_run(**payload: Any) -> bytes:
    sample = json.loads((SAMPLES[0].parent / "StartRun.v2.json").read_text(encoding="utf-8"))
    sample["payload"].update(payload)
    return json.dumps(sample).encode()


@pytest.mark.parametrize("raw", [b"[" * 100_000 + b"]" * 100_000,
                                 b'{"a":' * 50_000 + b"1" + b"}" * 50_000])
def test_deeply_nested_json_is_a_contract_error_not_a_recursion_error(raw: bytes) -> None:
    assert "nested more than" in reason(raw)


def test_nesting_under_the_recursion_limit_is_still_bounded() -> None:
    assert "nested more than 64 levels" in reason(start_run(inputs={"x": nested(200)}))
    assert isinstance(outcome(start_run(inputs={"x": nested(MAX_DEPTH - 4)})), Envelope)


def test_integer_of_thousands_of_digits_is_a_contract_error_not_a_value_error() -> None:
    text = reason(b'{"type": "StartRun", "schema_version": ' + b"9" * 5000 + b"}")
    assert "not JSON" in text and "sys.set_int_max_str_digits" not in text


@example(2**63)
@example(-(2**63) - 1)
@given(st.integers(min_value=2**63, max_value=10**4000)
       | st.integers(min_value=-(10**4000), max_value=-(2**63) - 1))
@settings(max_examples=20, deadline=None)
def test_integer_beyond_64_bits_is_rejected(number: int) -> None:
    assert "does not fit in 64 bits" in reason(start_run(inputs={"n": number}))


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999"])
def test_non_finite_numbers_are_rejected(constant: bytes) -> None:
    raw = start_run(inputs={"x": "PLACEHOLDER"}).replace(b'"PLACEHOLDER"', constant)
    assert "not JSON" in reason(raw) or "out of range" in reason(raw)


@pytest.mark.parametrize("where", ["value", "key"])
def test_unpaired_surrogates_are_rejected(where: str) -> None:
    inputs = {"x": "\ud800"} if where == "value" else {"\udfff": 1}
    assert "not valid Unicode" in reason(start_run(inputs=inputs))


@pytest.mark.parametrize("where", ["value", "key"])
def test_unpaired_surrogates_written_as_raw_bytes_are_rejected(where: str) -> None:
    """UTF-8 has no code for a lone surrogate, but its three bytes (ED A0 80 for U+D800)
    are what a lenient writer sends, and the JSON reader takes them as the surrogate: an
    envelope that could then not be encoded again (for an outbox or a dead letter)."""
    inputs = {"x": "\ud800"} if where == "value" else {"\udfff": 1}
    sample = json.loads(start_run(inputs=inputs))
    raw = json.dumps(sample, ensure_ascii=False).encode("utf-8", "surrogatepass")
    assert b"\xed" in raw and b"\\u" not in raw
    assert "not valid Unicode" in reason(raw)


def test_nul_in_a_key_is_rejected_but_fine_in_a_value() -> None:
    assert "NUL" in reason(start_run(inputs={"a\u0000b": 1}))
    assert isinstance(outcome(start_run(inputs={"ab": "a\u0000b"})), Envelope)


def test_paired_surrogates_escaped_by_json_are_fine() -> None:
    envelope = outcome(start_run(inputs={"emoji": "💥"}))  # json.dumps writes \ud83d\udca5
    assert isinstance(envelope, Envelope)


@pytest.mark.parametrize("version", [True, False, 1.0, "1"])
def test_schema_version_must_be_an_integer(version: Any) -> None:
    sample = json.loads((SAMPLES[0].parent / "CancelRun.v1.json").read_text(encoding="utf-8"))
    assert "schema_version" in reason(json.dumps({**sample, "schema_version": version}).encode())


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"])
def test_a_time_with_no_utc_equivalent_is_rejected(moment: str) -> None:
    """It parsed, then MongoDB could not store it (OverflowError: date value out of range)."""
    sample = json.loads((SAMPLES[0].parent / "WorkItemRequested.v1.json").read_text())
    assert "out of range in UTC" in reason(json.dumps({**sample, "occurred_at": moment}).encode())
    sample["payload"]["due_at"] = moment
    assert "out of range in UTC" in reason(json.dumps(sample).encode())


def test_huge_unknown_type_name_is_not_echoed_whole() -> None:
    sample = json.loads((SAMPLES[0].parent / "CancelRun.v1.json").read_text(encoding="utf-8"))
    text = reason(json.dumps({**sample, "type": "X" * 500_000}).encode())
    assert "unknown message type" in text and len(text) < 300
