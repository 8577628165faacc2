"""The ``delivery_log`` collection: a handled batch's finished first attempts, one page each.

The embedded MongoDB plans every written document over every index of its collection, so
a document per delivery cost notification two of a bench run's ten documents (decision 23).
First attempts that ended for good (``sent``, or ``failed`` for good) are never written
again, so a batch stores them together: one page, ``{_id, created_at, deliveries, ids,
recipients}``, where ``deliveries`` holds each delivery as a ``deliveries`` document would
(with ``id``), and ``ids`` / ``recipients`` are flat copies for the multikey indexes.
Pending ones (the retry sweep leases and updates them) stay in ``deliveries``.

Two replicas handling the same event during a rebalance may each write a page holding the
same id (decision 15's window): readers keep one of them, the first stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING

from services.notification.core.model import Delivery, as_fields
from shared.mongo import Index

DELIVERY_LOG = "delivery_log"
INDEXES = [
    Index(DELIVERY_LOG, [("ids", ASCENDING)]),  # the dedupe: which ids are stored
    Index(DELIVERY_LOG, [("recipients", ASCENDING), ("created_at", DESCENDING)]),
    Index(DELIVERY_LOG, [("created_at", DESCENDING)]),  # the admins' newest first
]


def page_document(deliveries: Sequence[Delivery], now: datetime) -> dict[str, Any]:
    """One batch's finished first attempts as one page, under a fresh id."""
    return {
        "_id": uuid.uuid4().hex,
        "created_at": now,
        "deliveries": [as_fields(d) for d in deliveries],
        "ids": [d.id for d in deliveries],
        "recipients": sorted({d.recipient for d in deliveries}),
    }


def stored_query(ids: list[str]) -> dict[str, Any]:
    """The pages holding any of these ids: a multikey ``$in`` on the leading field."""
    return {"ids": {"$in": ids}}


def search_query(recipient: str | None) -> dict[str, Any]:
    return {"recipients": recipient} if recipient else {}


def of_recipient(page: dict[str, Any], recipient: str | None) -> list[dict[str, Any]]:
    """The page's deliveries to this recipient (to anyone when None)."""
    return [d for d in page["deliveries"] if not recipient or d["recipient"] == recipient]


def with_status(deliveries: Iterable[dict[str, Any]],
                status: str | None) -> list[dict[str, Any]]:
    return [d for d in deliveries if not status or d["status"] == status]


def newest(deliveries: Iterable[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """Newest first, each id once: the first one given wins (the search passes the live
    ``deliveries`` documents first: a pending copy is the one the sweep still updates)."""
    unique: dict[str, dict[str, Any]] = {}
    for delivery in deliveries:
        unique.setdefault(delivery["id"], delivery)
    return sorted(unique.values(), key=lambda d: d["created_at"], reverse=True)[:limit]


def is_older_than_found(page: dict[str, Any], found: Sequence[dict[str, Any]],
                        limit: int) -> bool:
    """Whether no delivery of this page (nor of any older page) can make the answer.

    A delivery is planned before its page is written, so its ``created_at`` is at most
    the page's: once ``limit`` deliveries newer than the page are found, the rest are older.
    """
    if len(found) < limit:
        return False
    cutoff: datetime = sorted((d["created_at"] for d in found), reverse=True)[limit - 1]
    created: datetime = page["created_at"]
    return created < cutoff
