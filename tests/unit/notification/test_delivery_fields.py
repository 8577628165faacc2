"""A delivery is stored from its fields without a deep copy: the same dict as asdict, and
no field may hold something a shallow copy would share (a list, a dict)."""

from __future__ import annotations

import dataclasses
import typing
from datetime import UTC, datetime

from services.notification.core import model
from services.notification.core.model import Delivery, as_fields


def test_as_fields_is_asdict_for_every_field() -> None:
    now = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    delivery = Delivery(id="d1", source_event_id="e1", source_type="WorkItemAssigned",
                        recipient="alice", channel="email", template="assigned",
                        subject="Legal review", body="Please review", next_attempt_at=now,
                        created_at=now, run_id="r1", correlation_id="c1",
                        address="alice@example.com", status="sent", attempts=1,
                        last_error=None, sent_at=now)
    assert as_fields(delivery) == dataclasses.asdict(delivery)


def test_no_field_is_a_container() -> None:
    hints = typing.get_type_hints(Delivery, vars(model))
    for field in dataclasses.fields(Delivery):
        assert not any(str(hints[field.name]).startswith(kind) for kind in
                       ("list", "dict", "set", "typing.List", "typing.Dict")), field.name
