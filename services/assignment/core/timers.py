"""Timers are values: decide plans them, the service stores and fires them.

A timer carries the item's epoch at planning time; when it fires, ``decide`` compares
it with the item's current epoch, and a stale one yields an empty decision.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from contracts.events.workitems import Escalation

TimerPurpose = Literal["reminder", "escalation"]


@dataclass(frozen=True)
class Timer:
    """Fire at ``due_at`` with FireReminder(epoch, overdue) or Escalate(epoch)."""

    work_item_id: str
    purpose: TimerPurpose
    due_at: datetime
    epoch: int
    overdue: bool = False


def plan_timers(
    work_item_id: str,
    *,
    due_at: datetime | None,
    before_due_seconds: Iterable[float],
    after_due_seconds: Iterable[float],
    escalation: Escalation | None,
    epoch: int,
    now: datetime,
) -> tuple[Timer, ...]:
    """Reminders and the escalation for one assignment, soonest first.

    Only times after ``now`` are planned: a reassigned, already overdue item must not
    fire every old reminder at once, nor escalate the moment it lands with someone new.
    """
    if due_at is None:
        return ()
    timers = [
        Timer(work_item_id, "reminder", due_at - timedelta(seconds=s), epoch)
        for s in before_due_seconds
    ]
    timers += [
        Timer(work_item_id, "reminder", due_at + timedelta(seconds=s), epoch, overdue=True)
        for s in after_due_seconds
    ]
    if escalation is not None:
        at = due_at + timedelta(seconds=escalation.after_due_seconds)
        timers.append(Timer(work_item_id, "escalation", at, epoch))
    return tuple(sorted((t for t in timers if t.due_at > now), key=lambda t: t.due_at))
