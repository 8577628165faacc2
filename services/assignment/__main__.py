"""The assignment process (the Work Guide): python -m services.assignment"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from contracts.topics import ACCESS, WORKITEMS_DISPATCH
from services.assignment.api import people_router, work_router
from services.assignment.completing import CompletionFastPath
from services.assignment.core.directory import Directory
from services.assignment.directory_store import DirectoryStore
from services.assignment.gauges import WorkItemGauges
from services.assignment.guide import WorkGuide
from services.assignment.handler import DispatchHandler
from services.assignment.store import INDEXES, WorkItemStore
from services.assignment.tokens import INDEXES as TOKEN_INDEXES
from services.assignment.tokens import TokenDesk, directory_published
from services.assignment.web import pages
from shared.access import AccessView
from shared.runtime import Runtime
from shared.settings import ServiceSettings

DEFAULT_PORT = 8104


class AssignmentSettings(ServiceSettings):
    service_name: str = "assignment"
    # The Work Guide pages (/ui) read a run's timeline from the stage-coordinator's API.
    coordinator_url: str = "http://127.0.0.1:8102"
    # The timer loop sleeps until the soonest timer it knows of; timers another replica
    # planned (one that stopped before firing them) are found within this long.
    timer_max_sleep_seconds: float = Field(default=30.0, gt=0)


def build(settings: AssignmentSettings | None = None) -> Runtime:
    settings = settings or AssignmentSettings()
    rt = Runtime(settings, title="Baton Work Guide (assignment)", default_port=DEFAULT_PORT)
    directory = DirectoryStore(rt.db)
    store = WorkItemStore(rt.db, rt.publisher, rt.metrics,
                          mark_delay=settings.outbox_mark_seconds)
    guide = WorkGuide(store, directory, timer_max_sleep=settings.timer_max_sleep_seconds)
    authenticator = _token_desk(rt, settings, directory)
    rt.consume(WORKITEMS_DISPATCH, DispatchHandler(store, directory),
               accepts=lambda e: e.type in ("WorkItemRequested", "WorkItemCancelRequested"))
    # Each of these sleeps until it has something to do (a timer due, an outbox published).
    rt.every(0, guide.timers.run_once, "work item timers")
    rt.every(0, store.spine.mark_when_published, "outbox marks")
    rt.every(settings.timer_poll_seconds, guide.assign_waiting, "waiting work items")
    rt.every(settings.outbox_sweep_seconds, store.spine.sweep, "outbox sweep")
    rt.on_broker_reset.append(lambda: store.spine.sweep(timedelta(0)))
    rt.on_broker_reset.append(store.spine.timers_index.restore)  # a server that lost it
    rt.http.include_router(work_router(guide, authenticator))
    # Completions are answered ahead of routing, the same way (decision 39).
    rt.add_guarded_middleware(CompletionFastPath, guide=guide, auth=authenticator)
    rt.http.include_router(people_router(directory, guide, authenticator))
    rt.http.include_router(pages.ui_router(guide, authenticator, settings.coordinator_url))
    rt.add_indexes([*INDEXES, *TOKEN_INDEXES])
    rt.on_start.append(store.migrate)  # old indexes dropped, lookup keys back-filled
    rt.every(settings.gauge_refresh_seconds, WorkItemGauges(store.items, rt.registry, rt.name),
             "work item gauges")
    return rt


def _token_desk(rt: Runtime, settings: AssignmentSettings,
                directory: DirectoryStore) -> TokenDesk:
    """Tokens and the directory's people go out on the access topic, which this service
    checks tokens against too (services/assignment/tokens.py)."""
    view = AccessView()
    view.projection = rt.follow(ACCESS, view.apply)
    desk = TokenDesk(rt.db, view, rt.publisher, settings.admin_token,
                     token_lifetime=timedelta(days=settings.token_days),
                     session_lifetime=timedelta(hours=settings.session_hours))

    async def announce(changed: Directory) -> None:
        await rt.publisher.publish([directory_published(changed)])

    async def announce_all() -> None:  # what a crash kept from the topic
        await desk.announce_all(await directory.current(fresh=True))

    directory.announce = announce
    rt.on_ready.insert(0, announce_all)
    rt.on_broker_reset.append(announce_all)
    return desk


if __name__ == "__main__":
    build().serve()
