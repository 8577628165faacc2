"""People and pools of the directory, and how a directory document is read.

Membership is the union of a group's ``members`` and the users naming it in ``groups``
(the same for queues); :func:`normalize` stores it on both sides, so the rest of the core
reads ``group.members`` or ``user.groups`` without recomputing it.  Every reference
(member, manager, delegate, group, queue) must name a declared entry: a typo is an
error when the directory is loaded, not a work item nobody can see.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

ADMIN_ROLE = "admin"
SECTIONS = ("users", "groups", "queues")


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    name: str = ""

    @model_validator(mode="before")
    @classmethod
    def _name_defaults_to_id(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and not data.get("name") and data.get("id"):
            return {**data, "name": data["id"]}
        return data


class User(_Entry):
    email: str | None = None
    manager: str | None = None
    groups: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    delegate: str | None = Field(default=None, description="who works for them when out")
    out_of_office: bool = False
    channels: tuple[str, ...] = ("email",)
    chat_handle: str | None = None
    roles: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles


class Group(_Entry):
    members: tuple[str, ...] = ()


class Queue(_Entry):
    members: tuple[str, ...] = ()


class DirectoryError(ValueError):
    """A directory document that does not hold together; the text lists every problem."""


def normalize(
    document: Mapping[str, Any],
) -> tuple[dict[str, User], dict[str, Group], dict[str, Queue]]:
    """Users, groups and queues by id, with membership stored on both sides."""
    unknown = set(document) - set(SECTIONS)
    if unknown:
        raise DirectoryError(f"unknown directory sections: {', '.join(sorted(unknown))}")
    users = _unique(User, document.get("users") or [], "user")
    groups = _unique(Group, document.get("groups") or [], "group")
    queues = _unique(Queue, document.get("queues") or [], "queue")
    _check_references(users, groups, queues)
    in_groups = _union(groups, users, "groups")
    in_queues = _union(queues, users, "queues")
    users = {
        uid: user.model_copy(
            update={"groups": _of(uid, in_groups, groups), "queues": _of(uid, in_queues, queues)}
        )
        for uid, user in users.items()
    }
    groups = {gid: g.model_copy(update={"members": in_groups[gid]}) for gid, g in groups.items()}
    queues = {qid: q.model_copy(update={"members": in_queues[qid]}) for qid, q in queues.items()}
    return users, groups, queues


def tolerate(
    document: Mapping[str, Any],
) -> tuple[tuple[dict[str, User], dict[str, Group], dict[str, Queue]], list[str]]:
    """What :func:`normalize` makes of the usable part of a stored document, and the problems.

    A directory is checked before it is stored, but one stored by an older version (section
    by section, so a crash or a race could leave a queue naming a removed user) may not
    hold together.  Reading it must not fail every request: an entry that does not parse
    or repeats an id is left out, and a reference to nobody is dropped.
    """
    problems = [f"unknown directory section {name!r} left out"
                for name in sorted(set(document) - set(SECTIONS))]
    kept: dict[str, list[dict[str, Any]]] = {}
    for section, model in (("users", User), ("groups", Group), ("queues", Queue)):
        entries: dict[str, dict[str, Any]] = {}
        raw = document.get(section)
        for item in raw if isinstance(raw, list) else []:
            try:
                entry = model.model_validate(item).model_dump()
            except ValueError as exc:
                problems.append(f"a {section[:-1]} that does not parse was left out: {exc}")
                continue
            if entry["id"] in entries:
                problems.append(f"{section[:-1]} {entry['id']!r} is declared twice")
                continue
            entries[entry["id"]] = entry
        kept[section] = list(entries.values())
    declared = {section: {e["id"] for e in entries} for section, entries in kept.items()}
    for user in kept["users"]:
        for role in ("manager", "delegate"):
            if user[role] is not None and user[role] not in declared["users"]:
                problems.append(f"user {user['id']!r} named unknown {role} {user[role]!r}")
                user[role] = None
        for section in ("groups", "queues"):
            user[section] = _known(user, section, declared[section], problems)
    for section in ("groups", "queues"):
        for pool in kept[section]:
            pool["members"] = _known(pool, "members", declared["users"], problems)
    return normalize(kept), problems


def _known(entry: dict[str, Any], field: str, declared: set[str], problems: list[str]) -> list[str]:
    unknown = [ref for ref in entry[field] if ref not in declared]
    if unknown:
        problems.append(f"{entry['id']!r} named unknown {field} {', '.join(map(repr, unknown))}")
    return [ref for ref in entry[field] if ref in declared]


E = TypeVar("E", "User", "Group", "Queue")


def _unique(model: type[E], raw: Iterable[Any], label: str) -> dict[str, E]:
    entries: dict[str, E] = {}
    for item in raw:
        entry = model.model_validate(item)
        if entry.id in entries:
            raise DirectoryError(f"{label} {entry.id!r} is declared twice")
        entries[entry.id] = entry
    return entries


def _check_references(
    users: Mapping[str, User], groups: Mapping[str, Group], queues: Mapping[str, Queue]
) -> None:
    problems: list[str] = []
    for user in users.values():
        for role, ref in (("manager", user.manager), ("delegate", user.delegate)):
            if ref is not None and ref not in users:
                problems.append(f"user {user.id!r} names unknown {role} {ref!r}")
        problems += [
            f"user {user.id!r} names unknown group {g!r}" for g in user.groups if g not in groups
        ]
        problems += [
            f"user {user.id!r} names unknown queue {q!r}" for q in user.queues if q not in queues
        ]
    pools: tuple[tuple[str, Mapping[str, Group | Queue]], ...] = (
        ("group", groups),
        ("queue", queues),
    )
    for label, entries in pools:
        for entry in entries.values():
            problems += [
                f"{label} {entry.id!r} names unknown member {m!r}"
                for m in entry.members
                if m not in users
            ]
    if problems:
        raise DirectoryError("; ".join(problems))


def _union(
    entries: Mapping[str, Group | Queue], users: Mapping[str, User], side: str
) -> dict[str, tuple[str, ...]]:
    """Members of each entry: its own list, then the users naming it (order kept, no dupes)."""
    members: dict[str, list[str]] = {
        eid: list(dict.fromkeys(e.members)) for eid, e in entries.items()
    }
    for user in users.values():
        for eid in getattr(user, side):
            if user.id not in members[eid]:
                members[eid].append(user.id)
    return {eid: tuple(ids) for eid, ids in members.items()}


def _of(
    user_id: str, members: Mapping[str, tuple[str, ...]], declared: Mapping[str, Any]
) -> tuple[str, ...]:
    return tuple(eid for eid in declared if user_id in members[eid])
