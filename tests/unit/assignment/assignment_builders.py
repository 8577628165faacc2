"""Given/when/then helpers for the work-item core: a directory, requests, items."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.events.workitems import AssigneeSpec, Escalation, WorkItemRequested
from services.assignment.core import (
    Command,
    Decision,
    Directory,
    OpenWorkItem,
    Rejection,
    WorkItem,
    apply,
    decide,
)

NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
DUE = NOW + timedelta(days=2)

DIRECTORY_DOCUMENT: dict[str, Any] = {
    "users": [
        {"id": "ann", "name": "Ann", "email": "ann@example.com", "manager": "carol",
         "groups": ["hr"], "channels": ["email", "chat"], "chat_handle": "@ann"},
        {"id": "bob", "name": "Bob", "email": "bob@example.com", "manager": "carol"},
        {"id": "carol", "name": "Carol", "email": "carol@example.com", "manager": "dave"},
        {"id": "dave", "name": "Dave", "email": "dave@example.com", "roles": ["admin"]},
        {"id": "erin", "name": "Erin", "manager": "carol", "out_of_office": True,
         "delegate": "frank"},
        {"id": "frank", "name": "Frank", "manager": "carol", "queues": ["it"]},
        {"id": "gary", "name": "Gary", "manager": "carol"},
    ],
    "groups": [
        {"id": "hr", "name": "Human resources", "members": ["bob"]},
        {"id": "ghosts", "name": "Nobody", "members": []},
    ],
    "queues": [{"id": "it", "name": "IT", "members": ["gary"]}],
}  # fmt: skip
DIRECTORY = Directory.from_document(DIRECTORY_DOCUMENT)

FORM: dict[str, Any] = {
    "type": "object",
    "required": ["start_date", "laptop"],
    "properties": {
        "start_date": {"type": "string", "format": "date"},
        "laptop": {"type": "object", "required": ["model"],
                   "properties": {"model": {"enum": ["mac", "thinkpad"]}}},
        "notes": {"type": "string", "maxLength": 20},
    },
    "additionalProperties": False,
}  # fmt: skip
VALID_VALUES: dict[str, Any] = {"start_date": "2025-04-01", "laptop": {"model": "mac"}}


def request(
    kind: str = "user",
    value: str = "ann",
    *,
    step_kind: str = "interactive",
    form: dict[str, Any] | None = None,
    record: dict[str, Any] | None = None,
    due_at: datetime | None = DUE,
    before: list[float] | None = None,
    after: list[float] | None = None,
    escalation: Escalation | None = None,
) -> WorkItemRequested:
    return WorkItemRequested(
        orchestration="onboarding",
        version=3,
        stage="hr",
        step="collect",
        attempt=1,
        kind=step_kind,
        title="Collect new-hire details",
        assignee=AssigneeSpec(kind=kind, value=value),
        form=form,
        record=record if record is not None else {"id": "42", "owner": "bob"},
        due_at=due_at,
        reminders_before_due_seconds=before or [],
        reminders_after_due_seconds=after or [],
        escalation=escalation,
    )


def open_command(req: WorkItemRequested | None = None) -> OpenWorkItem:
    return OpenWorkItem(work_item_id="wi-1", run_id="run-1", request=req or request())


def given(
    req: WorkItemRequested | None = None, *commands: Command, directory: Directory = DIRECTORY
) -> WorkItem:
    """An item opened from ``req`` and then moved by ``commands`` (each must succeed)."""
    item = apply(None, accepted(None, open_command(req), directory=directory), NOW)
    assert item is not None
    for command in commands:
        moved = apply(item, accepted(item, command, directory=directory), LATER)
        assert moved is not None
        item = moved
    return item


def when(
    item: WorkItem | None,
    command: Command,
    *,
    now: datetime = LATER,
    directory: Directory = DIRECTORY,
) -> Decision | Rejection:
    return decide(item, command, now, directory)


def accepted(
    item: WorkItem | None,
    command: Command,
    *,
    now: datetime = LATER,
    directory: Directory = DIRECTORY,
) -> Decision:
    result = decide(item, command, now, directory)
    assert isinstance(result, Decision), result
    return result


def rejected(
    item: WorkItem | None,
    command: Command,
    *,
    now: datetime = LATER,
    directory: Directory = DIRECTORY,
) -> Rejection:
    result = decide(item, command, now, directory)
    assert isinstance(result, Rejection), result
    return result


def types_of(decision: Decision) -> list[str]:
    return [type(event).__name__ for event in decision.events]


def then(item: WorkItem, decision: Decision, at: datetime = LATER) -> WorkItem:
    moved = apply(item, decision, at)
    assert moved is not None
    return moved
