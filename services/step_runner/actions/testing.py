"""Actions for tests and demos of failure handling: a custom action like any other.

``flaky`` fails its first ``fail_times`` attempts (retryable, or fatal when ``fatal`` is
true), optionally after ``sleep_seconds``, then succeeds and reports what it saw.  It
keeps no state: the attempt number comes with each dispatch, so redeliveries and
restarts behave the same.
"""

from __future__ import annotations

import asyncio
from typing import Any

from services.step_runner.actions import ActionContext, ActionResult, FatalError, RetryableError


class Flaky:
    async def run(self, inputs: dict[str, Any], context: ActionContext) -> ActionResult:
        try:
            fail_times = int(inputs.get("fail_times", 0))
            sleep_seconds = float(inputs.get("sleep_seconds", 0))
        except (TypeError, ValueError) as exc:
            raise FatalError(f"flaky: fail_times and sleep_seconds must be numbers: {exc}") from exc
        if sleep_seconds > 0:
            await asyncio.sleep(sleep_seconds)
        if context.attempt <= fail_times:
            message = f"flaky: attempt {context.attempt} of {fail_times} planned failures"
            if inputs.get("fatal") is True:
                raise FatalError(message)
            raise RetryableError(message)
        return ActionResult(
            outputs={
                "attempt": context.attempt,
                "idempotency_key": context.idempotency_key,
                "stage": context.stage,
                "step": context.step,
                "echo": inputs.get("echo"),
            }
        )
