"""The Work Guide's check of an answer's messages, on the bytes it sends
(services/assignment/guide.py ``_checked``): the same verdict as the check on the dumped
values (contracts.registry.refusal_of_dumped), the same bytes as the outbox had before."""

from __future__ import annotations

from typing import Any

import pytest

from contracts import Envelope
from contracts.envelope import new_event
from contracts.events.workitems import WorkItemCompleted
from contracts.registry import MAX_MESSAGE_BYTES, refusal_of_dumped
from services.assignment.guide import _checked
from shared.outgoing import outgoing


def completed(outputs: dict[str, Any], comment: str = "") -> Envelope:
    payload = WorkItemCompleted(work_item_id="r:s:1", step="s", title="T", orchestration="o",
                                actor="ann", assignee_kind="user", assignee="ann",
                                recipients=["ann"], comment=comment, attempt=1,
                                outputs=outputs)
    return new_event(payload, producer="assignment", run_id="r", correlation_id="c")


def nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = {"n": value}
    return value


CASES = {
    "plain": completed({"ok": True, "n": 3, "x": 0.5}),
    "floats written differently by json and pydantic": completed({"a": 1e-7, "b": 1e16}),
    "a big exponent": completed({"a": 1e300}),
    "an integer beyond 64 bits": completed({"a": 2**70}),
    "text looking like a date without a UTC equivalent": completed({"a": "9999-12-31"}),
    "an escaped character": completed({"a": "tab\there\x00"}),
    "a lone surrogate": completed({}, comment="\ud800"),
    "nested too deep": completed({"deep": nested(62)}),
    "just under half the limit": completed({"a": "x" * (MAX_MESSAGE_BYTES // 2 - 2000)}),
    "just over half the limit": completed({"a": "x" * (MAX_MESSAGE_BYTES // 2 + 10)}),
    "over the limit": completed({"a": "x" * MAX_MESSAGE_BYTES}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_verdict_is_the_dumped_checks_and_the_bytes_are_the_outboxs(case: str) -> None:
    envelope = CASES[case]
    before = refusal_of_dumped(envelope.model_dump(mode="json"))
    checked = _checked([envelope])
    if before is not None:
        assert checked == before
    else:
        assert checked == [outgoing(envelope)]


def test_the_first_refused_message_is_the_one_named() -> None:
    fine, deep, huge = (CASES["plain"], CASES["nested too deep"], CASES["over the limit"])
    assert _checked([fine, deep, huge]) == refusal_of_dumped(deep.model_dump(mode="json"))
    assert _checked([fine, fine]) == [outgoing(fine), outgoing(fine)]
