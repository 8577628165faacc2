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
