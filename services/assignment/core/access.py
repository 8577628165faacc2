"""Who may see a work item and who may do what with it.

Completing an unclaimed group or queue item claims it implicitly, in the same decision
(the events say so: WorkItemClaimed, then WorkItemCompleted).  A separate claim
round trip would protect against nothing here: one writer decides per item, so two
members racing are serialized and the second is refused because the first claimed it;
and the audit history still shows who claimed the item and when.  What it would cost is
a click and a request for every pooled item, which people learn to resent.

Someone who may not see an item is told it is not found, so ids cannot be probed.
"""

from __future__ import annotations

from typing import Literal

from services.assignment.core.directory import Directory
from services.assignment.core.rejection import Rejection
from services.assignment.core.workitem import WorkItem

Verb = Literal[
    "view", "comment", "claim", "release", "complete", "approve", "reject", "delegate", "reassign"
]
_FINISHING = frozenset({"complete", "approve", "reject"})


def can_see(item: WorkItem, actor: str, directory: Directory) -> bool:
    """The user assignee, a pool member, the claimer, a delegate, or an admin."""
    if actor not in directory.users:
        return False
    if directory.is_admin(actor):
        return True
    if item.assignee_kind == "user" and item.assignee == actor:
        return True
    if actor in (item.claimed_by, item.delegated_to, item.delegated_from):
        return True
    return item.is_pooled and is_member(item, actor, directory)


def can_act(item: WorkItem, actor: str, verb: Verb, directory: Directory) -> Rejection | None:
    """None when ``actor`` may do ``verb``; otherwise the Rejection to answer with."""
    if not can_see(item, actor, directory):
        return Rejection(f"work item {item.id!r} not found", "not_found")
    if verb in ("view", "comment"):
        return None
    if verb == "reassign":
        return None if directory.is_admin(actor) else _forbidden("only an admin may reassign")
    if verb == "claim":
        return _check_claim(item, actor, directory)
    if verb == "release":
        return _check_release(item, actor, directory)
    if verb == "delegate":
        if actor == item.owner:
            return None
        return _forbidden("only the person the work item is with may delegate it")
    if verb in _FINISHING:
        return _check_finish(item, actor, verb, directory)
    return _forbidden(f"unknown action {verb!r}")  # pragma: no cover


def is_member(item: WorkItem, actor: str, directory: Directory) -> bool:
    return actor in directory.members(item.assignee_kind, item.assignee)


def _check_claim(item: WorkItem, actor: str, directory: Directory) -> Rejection | None:
    if not item.is_pooled:
        return Rejection(
            f"only group or queue work items are claimed; this one is for {item.assignee!r}",
            "conflict",
        )
    if not is_member(item, actor, directory):
        return _forbidden(f"{actor!r} is not a member of {item.assignee_kind} {item.assignee!r}")
    return None


def _check_release(item: WorkItem, actor: str, directory: Directory) -> Rejection | None:
    if not item.is_pooled:
        return Rejection("only group or queue work items are released", "conflict")
    if actor == item.claimed_by or directory.is_admin(actor):
        return None
    return _forbidden(f"only the claimer ({item.claimed_by}) or an admin may release it")


def _check_finish(item: WorkItem, actor: str, verb: str, directory: Directory) -> Rejection | None:
    if actor in (item.owner, item.delegated_to):
        return None
    if item.claimed_by:
        return _forbidden(f"the work item is claimed by {item.claimed_by!r}")
    if item.is_pooled and is_member(item, actor, directory):
        return None  # an implicit claim; see the module docstring
    return _forbidden(f"{actor!r} may not {verb} this work item")


def _forbidden(reason: str) -> Rejection:
    return Rejection(reason, "forbidden")
