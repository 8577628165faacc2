"""Read people's contacts from the ``users`` collection (owned by the assignment service).

One query per batch. Documents are someone else's: any field may be missing or odd, and a
contact is built from whatever is usable rather than failing the batch.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from services.notification.core.model import EMAIL, UserContact
from services.notification.core.plan import ContactBook

USERS = "users"
_PROJECTION = {"email": 1, "chat_handle": 1, "channels": 1}


async def load_contacts(
    db: AsyncDatabase[dict[str, Any]], user_ids: Iterable[str], enabled: Collection[str]
) -> ContactBook:
    ids = list(dict.fromkeys(user_ids))
    if not ids:
        return ContactBook()
    cursor = db[USERS].find({"_id": {"$in": ids}}, _PROJECTION)
    return ContactBook([contact_of(doc, enabled) async for doc in cursor])


def contact_of(doc: dict[str, Any], enabled: Collection[str]) -> UserContact:
    """A contact whose preferences are cut to the channels this deployment has.

    Someone who prefers only a disabled channel (chat without a webhook) falls back to
    email, so they still hear about their work.
    """
    preferred = doc.get("channels")
    if isinstance(preferred, str):
        preferred = [preferred]
    if not isinstance(preferred, list | tuple):
        preferred = [EMAIL]
    channels = tuple(c for c in preferred if isinstance(c, str) and c in enabled)
    return UserContact(
        id=str(doc["_id"]),
        email=_text(doc.get("email")),
        chat_handle=_text(doc.get("chat_handle")),
        channels=channels or (EMAIL,),
    )


def _text(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None
