"""The assignment process (the Work Guide): python -m services.assignment"""

from __future__ import annotations

from contracts.topics import WORKITEMS_DISPATCH
from services.assignment.api import people_router, work_router
from services.assignment.directory_store import DirectoryStore
from services.assignment.guide import WorkGuide
from services.assignment.handler import DispatchHandler
from services.assignment.store import INDEXES, WorkItemStore
from shared import auth
from shared.runtime import Runtime
from shared.settings import ServiceSettings

DEFAULT_PORT = 8104


class AssignmentSettings(ServiceSettings):
    service_name: str = "assignment"


def build(settings: AssignmentSettings | None = None) -> Runtime:
    settings = settings or AssignmentSettings()
    rt = Runtime(settings, title="Baton Work Guide (assignment)", default_port=DEFAULT_PORT)
    directory = DirectoryStore(rt.db)
    store = WorkItemStore(rt.db, rt.publisher, rt.metrics)
    guide = WorkGuide(store, directory)
    authenticator = auth.Authenticator(rt.db, settings.admin_token)
    rt.consume(WORKITEMS_DISPATCH, DispatchHandler(store, directory),
               accepts=lambda e: e.type in ("WorkItemRequested", "WorkItemCancelRequested"))
    rt.every(settings.timer_poll_seconds, guide.fire_due_timers, "work item timers")
    rt.every(settings.outbox_sweep_seconds, store.outbox.sweep, "outbox sweep")
    rt.http.include_router(work_router(guide, authenticator))
    rt.http.include_router(people_router(directory, guide, authenticator))
    rt.add_indexes([*INDEXES, *auth.INDEXES])
    return rt


if __name__ == "__main__":
    build().serve()
