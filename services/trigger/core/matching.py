"""Which orchestrations a record change starts, and the StartRun each one gets.

Deterministic: the run id derives from the change's event id and the orchestration, so
the same change delivered twice asks for the same run, which the coordinator creates once.

Object types match whatever their case (``employee`` starts what watches ``Employee``):
upstream systems spell them as they like, and two types differing only in case are one
type to the people who write definitions.  The run's record takes the definition's spelling.
A change that starts nothing gets a :class:`Missed` reason, so an integrator can see why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from contracts.envelope import derived_id
from contracts.events.commands import RecordRef, StartRun
from contracts.events.records import RecordChanged
from shared.definitions import Definition
from shared.expressions import ExpressionError, holds


@dataclass(frozen=True)
class Match:
    run_id: str
    command: StartRun


@dataclass(frozen=True)
class Skipped:
    orchestration: str
    reason: str


MissedReason = Literal["no_trigger_for_object", "no_trigger_for_change", "condition_false"]


@dataclass(frozen=True)
class Missed:
    """Why a change started nothing: which of the three filters stopped it."""

    reason: MissedReason
    watched: tuple[str, ...]  # the object types the orchestrations watch

    def describe(self, change: RecordChanged) -> str:
        if self.reason == "no_trigger_for_object":
            watched = ", ".join(self.watched) or "none"
            return f"no orchestration watches {change.object_type!r} records (watched: {watched})"
        if self.reason == "no_trigger_for_change":
            return f"no orchestration watching {change.object_type!r} starts on {change.change}"
        return "the trigger conditions did not hold"


def match(
    change: RecordChanged, event_id: str, definitions: list[Definition]
) -> list[Match | Skipped]:
    results: list[Match | Skipped] = []
    for definition in definitions:
        trigger = definition.trigger.record
        if (trigger is None or not same_object(trigger.object, change.object_type)
                or change.change not in trigger.on):
            continue
        try:
            if not holds(trigger.when, {"new": change.new, "old": change.old}):
                continue
        except ExpressionError as exc:
            results.append(Skipped(definition.name, f"trigger condition failed: {exc}"))
            continue
        results.append(
            Match(
                run_id=derived_id(event_id, definition.name),
                command=StartRun(
                    orchestration=definition.name,
                    version=definition.version,
                    record=RecordRef(
                        object_type=trigger.object,
                        record_id=change.record_id,
                        fields=change.new or change.old,
                    ),
                    requested_by=f"record:{change.object_type}",
                    at_most_one_active_per_record=definition.trigger.at_most_one_active_per_record,
                ),
            )
        )
    return results


def same_object(watched: str, sent: str) -> bool:
    return watched.casefold() == sent.casefold()


def missed(change: RecordChanged, definitions: list[Definition]) -> Missed:
    """Why ``change`` matched nothing (call it when :func:`match` found no Match)."""
    triggers = [d.trigger.record for d in definitions if d.trigger.record is not None]
    watched = tuple(sorted({t.object for t in triggers}))
    same = [t for t in triggers if same_object(t.object, change.object_type)]
    if not same:
        return Missed("no_trigger_for_object", watched)
    if not any(change.change in t.on for t in same):
        return Missed("no_trigger_for_change", watched)
    return Missed("condition_false", watched)
