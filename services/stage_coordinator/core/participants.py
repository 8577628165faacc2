"""Who takes part in a run, as the run document records it (``Run.participants``).

A person may see a run they take part in (docs/security.md): who started it, whom its
work items were assigned to (a user, or every member of a group or queue), who held one
since (a reassignment, a delegation, an escalation) and who completed one.  The
coordinator learns this from messages it already has: the StartRun, the work items it
requests, the outcomes it applies, and the work-item events of assignment, which alone
knows whom a manager or an out-of-office delegate turned out to be.  Entries read
``user:<id>``, ``group:<id>`` and ``queue:<id>``; they are only ever added.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from contracts.events import workitems as wi
from services.stage_coordinator.core import events as ev
from services.stage_coordinator.core.transition import InvalidMove, Transition

SYSTEM = "system"
POOLS = ("user", "group", "queue")
RECORD_PREFIX = "record."
NO_ONE_NEW = "the work-item event names no one the run does not know"
# The work-item events that give an item to someone new (a claim is not among them: the
# claimer is a member of the item's group or queue, which the run records already, and
# their completion records them by name; a write per claim would cost every pooled item).
HOLDER_EVENTS = wi.HOLDER_EVENTS


def person(user_id: str | None) -> list[str]:
    return [f"user:{user_id}"] if user_id and user_id != SYSTEM else []


def of_assignee(kind: str, value: str, record: Mapping[str, Any]) -> list[str]:
    """Whom a step's assignee spec names before assignment resolves it, when it can tell.

    A manager, or the delegate of someone out of office, is known only to assignment:
    its WorkItemAssigned adds them.
    """
    if kind in POOLS:
        return [f"{kind}:{value}"]
    if kind == "record_field":
        held: Any = record
        for part in value.removeprefix(RECORD_PREFIX).split("."):
            held = held.get(part) if isinstance(held, Mapping) else None
        return person(held) if isinstance(held, str) else []
    return []


def of_work_item_event(event: wi.WorkItemEvent) -> list[str]:
    """Who holds the item after ``event``: its assignee, or the delegate.

    The contracts' function, which the producer also puts in the ``holders`` header: the
    consumer passes over a holder event whose holders the run knows without parsing it.
    """
    return wi.holder_keys(event)


def new_keys(known: Iterable[str], keys: Iterable[str]) -> list[str]:
    seen = set(known)
    return [k for k in dict.fromkeys(keys) if k not in seen]


def join(t: Transition, event: wi.WorkItemEvent) -> None:
    """Record whoever a holder event names that the run does not know yet.

    Most name no one new (the run recorded the user, group or queue when it requested the
    item): that is a rejection, and the shell writes nothing for it.
    """
    joined = new_keys(t.current.participants, of_work_item_event(event))
    if not joined:
        raise InvalidMove(NO_ONE_NEW)
    t.apply(ev.ParticipantsJoined(at=t.now, actor=event.actor, participants=joined))
