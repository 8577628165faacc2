"""The step-runner process: python -m services.step_runner"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from contracts.topics import STEPS_DISPATCH
from services.step_runner.actions import load_actions
from services.step_runner.attempts import INDEXES, MongoAttempts
from services.step_runner.consumer import StepConsumer
from services.step_runner.handler import StepHandler
from services.step_runner.secrets import SecretStore
from shared.runtime import Runtime
from shared.settings import ServiceSettings

DEFAULT_PORT = 8103
SECRET_PREFIX = "BATON_SECRET_"


class StepRunnerSettings(ServiceSettings):
    service_name: str = "step-runner"
    outbound_allow: str = Field(
        default="", description="hosts (*.corp.example) and networks (10.0.0.0/8) outbound"
        " calls may reach beyond public addresses; comma-separated")
    secrets_dir: Path | None = Field(
        default=None, description="a directory of secret files, one per name")
    extra_actions: dict[str, str] = Field(
        default_factory=dict, description='more actions, {"name": "module:Class"} (tests)')
    max_step_timeout_seconds: float = Field(
        default=3600.0, gt=0, description="the longest a step's action may run")
    step_concurrency: int = Field(
        default=64, ge=1, description="steps run at once (beyond that, consuming waits)")

    def secret_values(self) -> dict[str, str]:
        """The BATON_SECRET_<NAME> variables, by NAME (read here, with the other settings)."""
        return {key.removeprefix(SECRET_PREFIX): value for key, value in os.environ.items()
                if key.startswith(SECRET_PREFIX) and len(key) > len(SECRET_PREFIX)}


def build(settings: StepRunnerSettings | None = None) -> Runtime:
    settings = settings or StepRunnerSettings()
    rt = Runtime(settings, title="Baton step-runner", default_port=DEFAULT_PORT)
    handler = StepHandler(
        MongoAttempts(rt.db), load_actions(settings, settings.extra_actions), rt.publisher,
        rt.registry, secrets=SecretStore(settings.secret_values(), settings.secrets_dir),
        max_timeout_seconds=settings.max_step_timeout_seconds,
        concurrency=settings.step_concurrency,
    )
    consumer = StepConsumer(**rt.consumer_arguments(
        STEPS_DISPATCH, handler, accepts=lambda e: e.type == "StepRequested"))
    rt.add_consumer(consumer)
    rt.on_broker_reset.append(consumer.forget_positions)
    rt.add_indexes(INDEXES)
    return rt


if __name__ == "__main__":
    build().serve()
