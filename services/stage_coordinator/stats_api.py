"""GET /stats: the bottleneck report (admins and operators); `baton stats` prints it."""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pymongo.asynchronous.collection import AsyncCollection

from services.stage_coordinator.stats import MAX_RUNS, load_runs, stats_report
from shared.auth import Authenticator, Principal
from shared.definitions.durations import parse_duration

LONGEST_WINDOW = timedelta(days=31)


def stats_router(runs: AsyncCollection[dict[str, Any]], history: AsyncCollection[dict[str, Any]],
                 auth: Authenticator) -> APIRouter:
    router = APIRouter(tags=["operations"])
    # Every run's waiting steps and errors: for those who see every run.
    Operator = Annotated[Principal, Depends(auth.operator)]

    @router.get("/stats", summary="Where runs spend their time: durations, WIP, bottleneck")
    async def stats(
        _: Operator,
        since: str = Query("1h", description="the window: 30m, 1h, 1d, 7d, or ISO 8601"),
        orchestration: str | None = None,
        top: int = Query(10, ge=1, le=100, description="how many longest-waiting steps"),
    ) -> dict[str, Any]:
        try:
            window = parse_duration(since)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        if not timedelta(0) < window <= LONGEST_WINDOW:
            raise HTTPException(422, "since must be more than 0 and at most 31d")
        now = datetime.now(UTC)
        docs, truncated = await load_runs(runs, history, since=now - window,
                                          orchestration=orchestration, limit=MAX_RUNS)
        return stats_report(docs, now=now, since=now - window, top=top, truncated=truncated)

    return router
