"""The embedded MongoDB's query plans, as the index tests read them."""

from __future__ import annotations

from typing import Any


async def first_index_scan(db: Any, collection: str, query: dict[str, Any]
                           ) -> tuple[str | None, dict[str, Any]]:
    """The index of the winning plan's first index scan (None: no index scan), and the plan."""
    plan = await db.command("explain", {"find": collection, "filter": query})
    winning = plan["queryPlanner"]["winningPlan"]
    stage: dict[str, Any] | None = winning
    while stage:
        if stage.get("stage") == "IXSCAN":
            return stage["indexName"], winning
        stage = stage.get("inputStage")
    return None, winning
