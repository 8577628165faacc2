"""The parse's fast path skips the value checks only for JSON that cannot fail them."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.envelope import derived_id
from contracts.registry import _SUSPECT, MAX_DEPTH, _no_constant, check_values, plainly_safe

SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(),  # any code point, lone surrogates and NULs included
    st.sampled_from(["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00",
                     "2025-03-04T09:15:00Z"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)),
    max_leaves=40)


def encoded(value: Any, ascii_only: bool) -> bytes | None:
    try:
        return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    except ValueError:  # inf: JSON cannot hold it
        return None


@settings(max_examples=400, deadline=None)
@given(VALUES, st.booleans())
def test_whatever_the_fast_path_lets_through_passes_the_checks(value: Any, ascii_only: bool
                                                               ) -> None:
    raw = encoded({"payload": value}, ascii_only)
    if raw is None or not plainly_safe(raw):
        return
    try:
        data = json.loads(raw, parse_constant=_no_constant)  # as the parse reads it
    except ValueError:
        return  # refused by the parse itself (bad UTF-8, Infinity)
    check_values(data)  # raises ContractError if the fast path skipped a refusal
    assert "9999-" not in raw.decode(errors="replace") and "0001-" not in raw.decode(
        errors="replace")


def test_the_fast_path_is_taken_for_an_ordinary_message_and_not_for_suspect_ones() -> None:
    ordinary = json.dumps({"type": "StepCompleted", "payload": {"step": "a", "n": 12,
                                                               "at": "2025-03-04T09:15:00Z"}})
    assert plainly_safe(ordinary.encode())
    for suspect in ('{"a": "\\ud800"}', '{"a\\u0000": 1}', '{"a": 9223372036854775808}',
                    '{"a": 1e400}', '{"a": "9999-12-31T23:59:59-23:59"}', "[" * 65 + "]" * 65):
        assert not plainly_safe(suspect.encode()), suspect


def test_hex_ids_with_an_e_and_digits_are_no_exponent_but_numbers_with_one_are() -> None:
    """An "e" followed by digits inside an id's hex is text; after a colon, comma or bracket
    (where JSON numbers stand) it is an exponent, and a big one needs the walk."""
    ids = json.dumps({"event_id": "5e1234abcdef", "run_id": "0e999e100", "n": 3e10})
    assert plainly_safe(ids.encode())
    for number in ('{"a": 1e308}', '{"a":-2.5E+400}', '{"a": [0, 7e-999]}', '{"a":1e0400}'):
        assert not plainly_safe(number.encode()), number


@settings(max_examples=300)
@given(st.text(), st.lists(st.one_of(st.integers(), st.text()), max_size=3))
def test_a_derived_id_is_the_uuid5_of_its_cause_and_parts(cause: str, parts: list[Any]) -> None:
    name = ":".join([cause, *map(str, parts)])
    try:
        expected = uuid.uuid5(uuid.NAMESPACE_URL, name).hex
    except UnicodeEncodeError:  # a lone surrogate: no id either way
        with pytest.raises(UnicodeEncodeError):
            derived_id(cause, *parts)
        return
    assert derived_id(cause, *parts) == expected


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from([b"0", b"1", b"9", b"e", b"E", b"+", b"-", b".", b":", b",",
                                 b"[", b"]", b"{", b"}", b" ", b'"', b"\\", b"u", b"a",
                                 b"9999-", b"0001-", b"1234567890"]), max_size=80))
def test_the_literal_searches_answer_as_the_one_regular_expression(parts: list[bytes]) -> None:
    """plainly_safe looks for literals in steps; its answer is the single pattern's."""
    raw = b"".join(parts)
    shallow = raw.count(b"{") + raw.count(b"[") <= MAX_DEPTH
    assert plainly_safe(raw) == (shallow and _SUSPECT.search(raw) is None)
