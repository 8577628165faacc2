"""Production actions are the installed ones; test actions come only when a stack asks."""

from __future__ import annotations

import asyncio
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from step_runner_support import dispatch, handler, outcome

from contracts.events.steps import StepFailed
from services.step_runner.actions import TEST_ACTIONS, ActionContext, ActionResult, load_actions
from services.trigger.__main__ import TriggerSettings, known_actions

ROOT = Path(__file__).resolve().parents[3]


def test_flaky_is_not_a_production_action() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    production = project["project"]["entry-points"]["baton.actions"]
    assert "flaky" not in production and not any("testing" in v for v in production.values())
    assert "flaky" not in load_actions()


def test_a_test_stack_adds_the_test_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(load_actions(extra=TEST_ACTIONS)) >= {"flaky", "http", "noop"}
    monkeypatch.setenv("BATON_EXTRA_ACTIONS", json.dumps(TEST_ACTIONS))
    assert "flaky" in known_actions(TriggerSettings().extra_actions)


class Forever:
    async def run(self, inputs: dict[str, Any], context: ActionContext) -> ActionResult:
        await asyncio.Event().wait()
        raise AssertionError("never set")


async def test_the_step_runner_caps_a_step_timeout() -> None:
    runner = handler({"forever": Forever()}, max_timeout_seconds=0.01)
    failed, _ = await outcome(runner, dispatch("forever", {}, timeout_seconds=86_400 * 3))
    assert isinstance(failed, StepFailed) and failed.retryable
    assert failed.error == "timed out after 0.01s"
