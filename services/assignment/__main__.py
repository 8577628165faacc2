"""The assignment process: python -m services.assignment"""

from __future__ import annotations

from contracts.topics import WORKITEMS_DISPATCH
from services.assignment.directory_store import DirectoryStore
from services.assignment.handler import INDEXES, DispatchHandler
from shared import auth
from shared.runtime import Runtime
from shared.settings import ServiceSettings

DEFAULT_PORT = 8104


class AssignmentSettings(ServiceSettings):
    service_name: str = "assignment"


def build(settings: AssignmentSettings | None = None) -> Runtime:
    settings = settings or AssignmentSettings()
    rt = Runtime(settings, title="Baton assignment (Work Guide)", default_port=DEFAULT_PORT)
    directory = DirectoryStore(rt.db)
    rt.consume(WORKITEMS_DISPATCH, DispatchHandler(rt.db, directory, rt.publisher),
               accepts=lambda e: e.type in ("WorkItemRequested", "WorkItemCancelRequested"))
    rt.add_indexes([*INDEXES, *auth.INDEXES])
    return rt


if __name__ == "__main__":
    build().serve()
