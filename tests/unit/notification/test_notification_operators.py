"""The operators told about run events are configured with their contacts (no directory)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from contracts.events.workitems import Contact
from services.notification.__main__ import NotificationSettings


def operators(value: str) -> list[Contact]:
    return NotificationSettings(operators=value).operators  # type: ignore[arg-type]


def test_operators_are_email_addresses_or_ids_with_one() -> None:
    assert operators("ops=ops@example.com, lead@example.com") == [
        Contact(user="ops", email="ops@example.com"),
        Contact(user="lead@example.com", email="lead@example.com"),
    ]


def test_operators_may_be_full_contacts_in_json() -> None:
    text = '[{"user": "ops", "chat_handle": "@ops", "channels": ["chat"]}]'
    assert operators(text) == [Contact(user="ops", chat_handle="@ops", channels=["chat"])]


def test_an_operator_named_by_id_alone_is_refused_at_start_up() -> None:
    """Regression: operators were user ids whose contacts notification read from the
    assignment service's users collection; an id alone would now reach nobody."""
    with pytest.raises(ValidationError, match="'ops' has no email address"):
        operators("ops")
