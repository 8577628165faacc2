"""Commands to a work item, in the imperative.  The actor is a user id from the caller.

Time comes with the call to ``decide`` (the message or request time), ids with the
command; nothing here reads a clock or draws a random number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contracts.events.workitems import AssigneeKind, WorkItemRequested

SYSTEM = "system"


@dataclass(frozen=True)
class OpenWorkItem:
    """Create the item for a step (``work_item_id`` is derived from the request's event id)."""

    work_item_id: str
    run_id: str
    request: WorkItemRequested


@dataclass(frozen=True)
class Claim:
    actor: str


@dataclass(frozen=True)
class Release:
    actor: str


@dataclass(frozen=True)
class Complete:
    actor: str
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Approve:
    """Approve, with the approval's form (checked against its schema as written)."""

    actor: str
    comment: str = ""
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reject:
    """Reject; only the form's ``required_on_reject`` fields are required (see core/forms.py)."""

    actor: str
    comment: str = ""
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reassign:
    """An admin moves the item elsewhere; ``to_kind`` is any assignee kind of the contracts."""

    actor: str
    to_kind: AssigneeKind
    to: str
    reason: str = ""


@dataclass(frozen=True)
class Delegate:
    actor: str
    to: str


@dataclass(frozen=True)
class Comment:
    actor: str
    text: str


@dataclass(frozen=True)
class Cancel:
    reason: str
    actor: str = SYSTEM


@dataclass(frozen=True)
class AssignWaiting:
    """Try again to resolve a waiting item's assignee (the directory may have changed)."""

    actor: str = SYSTEM


@dataclass(frozen=True)
class FireReminder:
    epoch: int
    overdue: bool = False


@dataclass(frozen=True)
class Escalate:
    epoch: int


Command = (
    OpenWorkItem
    | Claim
    | Release
    | Complete
    | Approve
    | Reject
    | Reassign
    | Delegate
    | Comment
    | Cancel
    | AssignWaiting
    | FireReminder
    | Escalate
)
