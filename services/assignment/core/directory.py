"""The directory (users, groups, queues, managers) and whom an assignee spec names.

The document shape (examples/directory.yaml)::

    users:  [{id, name, email, manager, groups: [], queues: [], delegate: null,
              out_of_office: false, channels: [email, chat], chat_handle: null, roles: []}]
    groups: [{id, name, members: []}]
    queues: [{id, name, members: []}]

How membership is merged and references are checked: :mod:`services.assignment.core.people`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.events.workitems import AssigneeSpec
from services.assignment.core.people import (
    SECTIONS,
    DirectoryError,
    Group,
    Queue,
    User,
    normalize,
    tolerate,
)
from services.assignment.core.rejection import Rejection

__all__ = ["Directory", "DirectoryError", "Group", "Queue", "Resolution", "User"]

ResolvedKind = Literal["user", "group", "queue"]
RECORD_PREFIX = "record."


@dataclass(frozen=True)
class Resolution:
    """Whom a work item goes to, and who hears about it.

    ``delegated_from`` names the user the spec named when they are out of office and
    their delegate got the item instead.
    """

    assignee_kind: ResolvedKind
    assignee: str
    recipients: tuple[str, ...]
    delegated_from: str | None = None


class Directory(BaseModel):
    """Users, groups and queues by id (build it with :meth:`from_document`).

    ``revision`` counts the changes stored: every change is written on condition that
    the revision it was decided on is still the stored one (0: none stored yet).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    users: dict[str, User] = Field(default_factory=dict)
    groups: dict[str, Group] = Field(default_factory=dict)
    queues: dict[str, Queue] = Field(default_factory=dict)
    revision: int = 0

    @classmethod
    def from_document(cls, document: Mapping[str, Any], revision: int = 0) -> Directory:
        """Read the examples/directory.yaml shape; raises DirectoryError listing every problem."""
        users, groups, queues = normalize(document)
        return cls(users=users, groups=groups, queues=queues, revision=revision)

    @classmethod
    def tolerant(
        cls, document: Mapping[str, Any], revision: int = 0
    ) -> tuple[Directory, list[str]]:
        """A stored document as far as it holds together, and what had to be left out."""
        (users, groups, queues), problems = tolerate(document)
        return cls(users=users, groups=groups, queues=queues, revision=revision), problems

    def with_user_changed(self, user_id: str, changes: Mapping[str, Any]) -> Directory | Rejection:
        """The directory after a change to one user's own settings (nothing else changes)."""
        if user_id not in self.users:
            return Rejection(f"no user {user_id!r}", "not_found")
        document = self.to_document()
        document["users"] = [{**entry, **changes} if entry["id"] == user_id else entry
                             for entry in document["users"]]
        try:
            return Directory.from_document(document, self.revision)
        except ValueError as exc:  # DirectoryError, or a field of the wrong type
            return Rejection(f"the change is invalid: {exc}", "invalid")

    def to_document(self) -> dict[str, Any]:
        return {
            section: [entry.model_dump(mode="json") for entry in getattr(self, section).values()]
            for section in SECTIONS
        }

    def is_admin(self, user_id: str) -> bool:
        user = self.users.get(user_id)
        return user is not None and user.is_admin

    def members(self, kind: str, pool_id: str) -> tuple[str, ...]:
        """Members of a group or queue; () for anything else or an unknown one."""
        pool = self._pools(kind).get(pool_id) if kind in ("group", "queue") else None
        return pool.members if pool else ()

    def resolve(self, spec: AssigneeSpec, record: Mapping[str, Any]) -> Resolution | Rejection:
        """Whom ``spec`` names, given the run's record."""
        match spec.kind:
            case "user":
                return self.resolve_user(spec.value)
            case "group" | "queue":
                return self.resolve_pool(spec.kind, spec.value)
            case "record_field":
                user_id = user_in_record(record, spec.value)
                return user_id if isinstance(user_id, Rejection) else self.resolve_user(user_id)
            case "manager_of":
                if spec.value.startswith(RECORD_PREFIX):
                    user_id = user_in_record(record, spec.value)
                    if isinstance(user_id, Rejection):
                        return user_id
                    return self.manager_of(user_id)
                return self.manager_of(spec.value)
        return Rejection(f"unknown assignee kind {spec.kind!r}", "invalid")  # pragma: no cover

    def resolve_user(self, user_id: str) -> Resolution | Rejection:
        """The user, or whom they delegated to while out of office (a chain is followed)."""
        if user_id not in self.users:
            return Rejection(f"unknown user {user_id!r}", "invalid")
        current, seen = self.users[user_id], {user_id}
        while current.out_of_office and current.delegate and current.delegate not in seen:
            seen.add(current.delegate)
            current = self.users[current.delegate]
        delegated_from = user_id if current.id != user_id else None
        return Resolution("user", current.id, (current.id,), delegated_from)

    def manager_of(self, user_id: str) -> Resolution | Rejection:
        """The user's manager (or the manager's out-of-office delegate)."""
        user = self.users.get(user_id)
        if user is None:
            return Rejection(f"unknown user {user_id!r}", "invalid")
        if not user.manager:
            return Rejection(f"user {user_id!r} has no manager", "invalid")
        return self.resolve_user(user.manager)

    def _pools(self, kind: str) -> Mapping[str, Group | Queue]:
        return self.groups if kind == "group" else self.queues

    def resolve_pool(self, kind: Literal["group", "queue"], pool_id: str) -> Resolution | Rejection:
        """The group or queue, with all its members as recipients."""
        pool = self._pools(kind).get(pool_id)
        if pool is None:
            return Rejection(f"unknown {kind} {pool_id!r}", "invalid")
        if not pool.members:
            # Nobody could see or claim it: fail the step visibly rather than let it hang.
            return Rejection(f"{kind} {pool_id!r} has no members to work on it", "invalid")
        return Resolution(kind, pool_id, pool.members)


def depends_on_directory(spec: AssigneeSpec, record: Mapping[str, Any]) -> bool:
    """Whether a failed resolution of ``spec`` is the directory's to mend (not the record's).

    An unknown user, group or queue, an empty pool or a missing manager may be added to
    the directory later; a record without the field that names the person never will.
    """
    names_a_field = spec.kind == "record_field" or (
        spec.kind == "manager_of" and spec.value.startswith(RECORD_PREFIX))
    return not names_a_field or not isinstance(user_in_record(record, spec.value), Rejection)


def user_in_record(record: Mapping[str, Any], field: str) -> str | Rejection:
    """The user id held by ``field`` (``owner``, ``record.owner`` or ``account.owner``)."""
    path = field.removeprefix(RECORD_PREFIX)
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return Rejection(f"record field {path!r} is missing", "invalid")
        value = value[part]
    if not isinstance(value, str) or not value:
        return Rejection(f"record field {path!r} holds {value!r}, not a user id", "invalid")
    return value
