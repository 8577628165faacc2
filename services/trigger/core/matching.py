"""Which orchestrations a record change starts, and the StartRun each one gets.

Deterministic: the run id derives from the change's event id and the orchestration, so
the same change delivered twice asks for the same run, which the coordinator creates once.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def match(
    change: RecordChanged, event_id: str, definitions: list[Definition]
) -> list[Match | Skipped]:
    results: list[Match | Skipped] = []
    for definition in definitions:
        trigger = definition.trigger.record
        if (trigger is None or trigger.object != change.object_type
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
                        object_type=change.object_type,
                        record_id=change.record_id,
                        fields=change.new or change.old,
                    ),
                    requested_by=f"record:{change.object_type}",
                    at_most_one_active_per_record=definition.trigger.at_most_one_active_per_record,
                ),
            )
        )
    return results
