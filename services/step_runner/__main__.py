"""The step-runner process: python -m services.step_runner"""

from __future__ import annotations

from contracts.topics import STEPS_DISPATCH
from services.step_runner.actions import load_actions
from services.step_runner.handler import INDEXES, StepHandler
from shared.runtime import Runtime
from shared.settings import ServiceSettings

DEFAULT_PORT = 8103


class StepRunnerSettings(ServiceSettings):
    service_name: str = "step-runner"


def build(settings: StepRunnerSettings | None = None) -> Runtime:
    settings = settings or StepRunnerSettings()
    rt = Runtime(settings, title="Baton step-runner", default_port=DEFAULT_PORT)
    handler = StepHandler(rt.db, load_actions(), rt.publisher, rt.registry)
    rt.consume(STEPS_DISPATCH, handler, accepts=lambda e: e.type == "StepRequested")
    rt.add_indexes(INDEXES)
    return rt


if __name__ == "__main__":
    build().serve()
