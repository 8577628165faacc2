"""The one-pass parse (pydantic reading the JSON) gives what the long one gives, or passes.

:func:`contracts.registry.parse` reads a plainly safe message of a type's newest version
in one pass; anything that pass refuses, or cannot read, is read the long way (``json.loads``,
the payload's validation, the envelope's), which words the refusals.  Here every golden
sample, and samples with hostile values put in, are read both ways: the one pass must
either pass the message on (None) or give the same envelope, never accept what the long
way refuses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import ContractError, Envelope, encode, parse
from contracts.registry import LATEST, _no_constant, _parsed_in_one_pass, parse_dict, plainly_safe

SAMPLES = sorted(Path(__file__).resolve().parents[2].joinpath("contracts", "samples").glob(
    "*.json"))
# As the producers write them (encode): the one pass reads the type and version ahead.
ENCODED = [encode(parse(p.read_bytes())) for p in SAMPLES]
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats() | st.text(max_size=20)
    | st.sampled_from(["2025-03-04T09:15:00Z", "2025-03-04T09:15:00", "9999-12-31T23:59:59-23:59",
                       "x\ud800", "NaN", 3.0, True, 1e400]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=10)


def long_way(raw: bytes) -> Envelope | ContractError:
    """What parse gave before the one pass, for a message without suspect values."""
    try:
        data = json.loads(raw, parse_constant=_no_constant)
        if not isinstance(data, dict):
            return ContractError("not an object")
        return parse_dict(data)
    except (ContractError, ValueError) as exc:
        return ContractError(str(exc))


def same(one: Envelope, other: Envelope) -> bool:
    return (type(one) is type(other) is Envelope and one == other
            and type(one.payload) is type(other.payload)
            and one.model_fields_set == other.model_fields_set
            and one.payload.model_fields_set == other.payload.model_fields_set
            and encode(one) == encode(other))


def check(raw: bytes) -> Envelope | None:
    quick = _parsed_in_one_pass(raw) if plainly_safe(raw) else None
    if quick is not None:
        expected = long_way(raw)
        assert isinstance(expected, Envelope), f"the one pass accepted {raw!r}: {expected}"
        assert same(quick, expected), raw
    return quick


@pytest.mark.parametrize("raw", ENCODED, ids=[p.stem for p in SAMPLES])
def test_every_sample_is_read_in_one_pass_as_the_long_way_reads_it(raw: bytes) -> None:
    data = json.loads(raw)
    if data["schema_version"] == LATEST[data["type"]]:
        assert check(raw) is not None
        assert same(parse(raw), long_way(raw))  # type: ignore[arg-type]


def places(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += places(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += places(item, (*prefix, index))
    return found


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.sampled_from(ENCODED), st.data())
def test_a_sample_with_any_value_put_anywhere_is_read_alike_or_passed_on(
        raw: bytes, data: st.DataObject) -> None:
    message = json.loads(raw)
    place = data.draw(st.sampled_from(places(message)[1:]))
    value = data.draw(VALUES)
    holder = message
    for step in place[:-1]:
        holder = holder[step]
    holder[place[-1]] = value
    text = json.dumps(message, separators=(",", ":"), ensure_ascii=data.draw(st.booleans()))
    check(text.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize("change", [
    (b'"schema_version":3,', b'"schema_version":3.0,'),
    (b'"schema_version":3,', b'"schema_version":true,'),
    (b'"timeout_seconds":30.0', b'"timeout_seconds":NaN'),
    (b'"timeout_seconds":30.0', b'"timeout_seconds":Infinity'),
    (b'"inputs":{', b'"inputs":{"a":-Infinity,'),
    (b'}}', b'},"type":"StepFailed"}'),
    (b'}}', b'},"schema_version":2}'),
    (b'}}', b'},"schema_version":3.0}'),
    (b'"run_id":"', b'"run_id":"","x":"'),
    (b'"step":"', b'"step":"\\u0041'),
    # (A lone surrogate's raw bytes are a suspect value since: refused on the long way too,
    # tests/unit/test_fuzz_event_parsing.py.)
    (b'"step":"', b'"step":"\t'),
    (b'{"event_id"', b'\xef\xbb\xbf{"event_id"'),
    (b'"type":"StepRequested"', b'"type":"Step\xffRequested"'),
    (b'"type":"StepRequested"', b'"type":"StepRequested\\u0000"'),
])
def test_what_the_one_pass_must_not_take_is_read_the_long_way(change: tuple[bytes, bytes]
                                                             ) -> None:
    raw = next(r for r in ENCODED if b'"type":"StepRequested","schema_version":3,' in r)
    if b'"timeout_seconds":30.0' not in raw:
        raw = raw.replace(b'"inputs":{', b'"timeout_seconds":30.0,"inputs":{', 1)
    changed = raw.replace(*change, 1)
    assert changed != raw
    assert not plainly_safe(changed) or _parsed_in_one_pass(changed) is None
    expected = long_way(changed)
    try:
        actual: Envelope | ContractError = parse(changed)
    except ContractError as exc:
        actual = exc
    assert type(actual) is type(expected)
