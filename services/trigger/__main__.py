"""The trigger process: python -m services.trigger"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from importlib.metadata import entry_points

from pydantic import Field

from contracts.topics import RECORDS_CHANGES
from services.trigger import starts as start_log
from services.trigger.announce import AnnouncedDefinitions
from services.trigger.api import definitions_router
from services.trigger.handler import RecordChangeHandler
from services.trigger.starts import StartLog
from services.trigger.subscriptions import Subscriptions
from shared.access import follow_access
from shared.definitions import store as definition_store
from shared.runtime import Runtime
from shared.settings import ServiceSettings

DEFAULT_PORT = 8101


class TriggerSettings(ServiceSettings):
    service_name: str = "trigger"
    start_resend_window_seconds: float = 900.0  # starts re-sent after a broker loss
    # The step-runner's settings of the same names: what definitions may use.
    extra_actions: dict[str, str] = Field(
        default_factory=dict, description='more actions, {"name": "module:Class"} (tests)')
    max_step_timeout_seconds: float = Field(
        default=3600.0, gt=0, description="the longest timeout a step may have")


def known_actions(extra: Iterable[str] = ()) -> frozenset[str]:
    """Actions the step-runner offers (entry point group baton.actions, the extra actions it
    is given) plus the built-in wait."""
    return frozenset({ep.name for ep in entry_points(group="baton.actions")} | {"wait"}
                     | set(extra))


def build(settings: TriggerSettings | None = None) -> Runtime:
    settings = settings or TriggerSettings()
    rt = Runtime(settings, title="Baton trigger", default_port=DEFAULT_PORT)
    store = AnnouncedDefinitions(rt.db, rt.publisher)
    rt.on_ready.append(store.announce_all)  # what a crash kept from the topic
    rt.on_broker_reset.append(store.announce_all)
    subscriptions = Subscriptions(store)
    starts = StartLog(rt.publisher, rt.db, timedelta(seconds=settings.start_resend_window_seconds))
    rt.consume(RECORDS_CHANGES, RecordChangeHandler(subscriptions, starts, rt.registry),
               accepts=lambda e: e.type == "RecordChanged")
    rt.add_indexes([*definition_store.INDEXES, *start_log.INDEXES])
    rt.on_broker_reset.append(starts.resend)
    rt.every(60.0, starts.prune, "prune kept starts")
    authenticator = follow_access(rt)
    rt.http.include_router(
        definitions_router(store, subscriptions, starts, authenticator,
                           known_actions(settings.extra_actions),
                           timedelta(seconds=settings.max_step_timeout_seconds))
    )
    return rt


if __name__ == "__main__":
    build().serve()
