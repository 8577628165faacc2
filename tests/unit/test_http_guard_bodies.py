"""A request body is walked value by value only when its bytes are not plainly safe: the
answer is the same as walking every body (shared/http_guard.py)."""

from __future__ import annotations

import json

import pytest

from contracts.registry import ContractError, check_values
from shared.http_guard import _json_problem

BODIES = [
    '{"values": {"answer": "yes"}}', '{"values": {"note": "naïve ✓"}}',
    '{"values": {"a": "\\ud800"}}', '{"values": {"a\\u0000": 1}}', '{"a": "x\\u0000y"}',
    '{"n": 9223372036854775808}', '{"n": -9223372036854775809}', '{"n": 9223372036854775807}',
    '{"n": 1e400}', '{"n": -2.5E+308}', '{"n": 1e308}', '{"d": "9999-12-31T23:59:59-23:59"}',
    '{"a": ' + '[' * 63 + ']' * 63 + '}', '{"a": ' + '[' * 70 + ']' * 70 + '}',
    '{"a": "\\ud83d\\ude00"}', '{"a": "\\udfff\\ud800"}', '{"values": {"x": "\\n\\t"}}',
]


def walked(body: bytes) -> str | None:
    try:
        check_values(json.loads(body))
    except ContractError as exc:
        return f"the JSON body cannot be accepted: {exc}"
    return None


@pytest.mark.parametrize("body", BODIES)
def test_a_body_is_refused_exactly_when_walking_it_refuses_it(body: str) -> None:
    raw = body.encode()
    assert _json_problem(b"application/json", raw) == walked(raw)


CONSTANTS = [b'{"values": {"x": NaN}}', b'{"x": [Infinity]}', b'{"x": -Infinity}',
             '{"x": NaN}'.encode("utf-16"), '{"x": -Infinity}'.encode("utf-32-le")]
PASSED = [b'{"values": {"ok": true}}', b'{"values": {"note": "NaN is a word"}}',
          b'{"values": {"ok": tru', b'\xef\xbb\xbf{"a": 1}', '{"a": 1}'.encode("utf-16")]


@pytest.mark.parametrize("body", CONSTANTS)
def test_a_constant_json_has_not_is_refused_in_any_encoding_it_is_read_in(body: bytes) -> None:
    problem = _json_problem(b"application/json", body)
    assert problem is not None and "is not a JSON number" in problem


@pytest.mark.parametrize("body", PASSED)
def test_a_body_it_need_not_parse_is_passed_on(body: bytes) -> None:
    """Bad syntax is the application's to report; "NaN" in a text is a text."""
    assert _json_problem(b"application/json", body) is None
