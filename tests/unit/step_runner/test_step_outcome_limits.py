"""An action's result the run could not read fails the step instead of stranding the run."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import CollectorRegistry

from contracts import encode, parse, parse_dict
from contracts.generate import SAMPLES_DIR
from services.step_runner.actions import ActionContext, ActionResult
from services.step_runner.attempts import MemoryAttempts
from services.step_runner.handler import StepHandler


class Returns:
    def __init__(self, outputs: dict[str, Any]) -> None:
        self.outputs = outputs

    async def run(self, inputs: dict[str, Any], context: ActionContext) -> ActionResult:
        return ActionResult(outputs=self.outputs)


def nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = {"n": value}
    return value


async def outcome_of(outputs: dict[str, Any]) -> dict[str, Any]:
    request = parse((SAMPLES_DIR / "StepRequested.v2.json").read_bytes())
    handler = StepHandler(MemoryAttempts(),
                          {"http": Returns(outputs)}, None,  # type: ignore[arg-type, dict-item]
                          CollectorRegistry())
    doc, _ = await handler.run_attempt(request)
    (message,) = doc["messages"]
    parse(json.dumps(message).encode())  # the coordinator can read what is stored and sent
    return dict(parse_dict(message).payload.model_dump())


async def test_a_result_within_the_limits_is_the_outcome() -> None:
    assert (await outcome_of({"ok": nested(3)}))["outputs"] == {"ok": nested(3)}


async def test_a_result_beyond_the_message_limits_fails_the_step() -> None:
    """Regression: the outcome was stored and published, then dead-lettered by the
    coordinator (too deep, or an integer beyond 64 bits), and the run waited for ever."""
    for outputs, why in (({"deep": nested(70)}, "nested more than 64 levels"),
                         ({"n": 2**70}, "does not fit in 64 bits")):
        failed = await outcome_of(outputs)
        assert failed["retryable"] is False
        assert failed["error"].startswith("the action's result cannot be sent to the run")
        assert why in failed["error"]


async def test_a_result_that_is_not_json_fails_the_step() -> None:
    failed = await outcome_of({"thing": object()})
    assert failed["retryable"] is False
    assert failed["error"].startswith("the action's result cannot be sent to the run: not JSON")


async def test_what_is_sent_is_what_is_stored_and_judged_alike_either_way() -> None:
    """An attempt's messages are encoded once and judged by their bytes when those are
    plainly safe; a replayable attempt (not stored) keeps no dicts of them.  Either way the
    bytes sent are the encoding of the stored outcome, and the verdict is the same."""
    request = parse((SAMPLES_DIR / "StepRequested.v2.json").read_bytes())
    for outputs in ({"ok": nested(3)}, {"deep": nested(70)}, {"n": 2**70},
                    {"thing": object()}, {"x": float("nan"), "e": 1e300},
                    {"text": "a\ud800"}, {"nul\x00key": 1}, {"big": "x" * 600_000}):
        handler = StepHandler(MemoryAttempts(),
                              {"http": Returns(outputs)}, None,  # type: ignore[arg-type, dict-item]
                              CollectorRegistry())
        stored, stored_sent = await handler.run_attempt(request, True)
        replayed, replayed_sent = await handler.run_attempt(request, False)
        (message,) = stored["messages"]
        assert [m.value for m in stored_sent] == [encode(parse_dict(message))], outputs
        # (a second attempt finishes later: the same outcome at another time)
        assert [parse(m.value).payload for m in replayed_sent] == [
            parse(m.value).payload for m in stored_sent], outputs
        assert stored["outcome"] == replayed["outcome"]
