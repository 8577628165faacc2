"""Times read back from documents and JSON: always timezone-aware."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def when(value: Any) -> datetime | None:
    """An aware datetime from an ISO 8601 string or a datetime (naive ones are UTC)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
