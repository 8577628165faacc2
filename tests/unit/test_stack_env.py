"""What each service process is started with: the stack's environment, then its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra import processes
from infra.stack import ServiceStack


def test_a_service_gets_its_own_mongodb_and_the_others_the_shared_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: dict[str, dict[str, str]] = {}

    def spawn(command: list[str], *, env: dict[str, str], **_: Any) -> Any:
        started[command[-1]] = env
        return None

    monkeypatch.setattr(processes, "spawn", spawn)
    stack = ServiceStack(env={"BATON_MONGODB_URI": "mongodb://shared"}, log_dir=tmp_path,
                         service_env={"stage-coordinator": {"BATON_MONGODB_URI": "mongodb://own"}})

    stack.start_one("stage-coordinator")
    stack.start_one("assignment")
    stack.start_one("stage-coordinator", replica=1, env={"BATON_LOG_LEVEL": "DEBUG"})

    assert started["services.stage_coordinator"]["BATON_MONGODB_URI"] == "mongodb://own"
    assert started["services.stage_coordinator"]["BATON_LOG_LEVEL"] == "DEBUG"
    assert started["services.assignment"]["BATON_MONGODB_URI"] == "mongodb://shared"
