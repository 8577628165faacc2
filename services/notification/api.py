"""The deliveries API, for admins: what was sent to whom, what is pending, what failed."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query

from services.notification.store import DeliveryStore
from shared.auth import Authenticator, Principal


def deliveries_router(store: DeliveryStore, auth: Authenticator) -> APIRouter:
    router = APIRouter(prefix="/deliveries", tags=["deliveries"])
    @router.get("")
    async def list_deliveries(
        _: Principal = Depends(auth.admin),
        recipient: str | None = Query(None, max_length=200),
        status: Literal["pending", "sent", "failed"] | None = None,
        limit: int = Query(50, ge=1, le=500),
    ) -> list[dict[str, Any]]:
        return await store.search(recipient=recipient, status=status, limit=limit)

    return router
