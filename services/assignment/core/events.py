"""What decide emits: the contracts' payloads, plus the one event that only the core needs.

A work item is born from :class:`WorkItemOpened`, which carries the whole request; the
wire event :class:`WorkItemAssigned` that follows it is too thin to build an item from.
``WorkItemOpened`` is never published (it is not a contract payload): the service
stores the item it produced.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.envelope import Payload
from contracts.events.steps import StepFailed
from contracts.events.workitems import WorkItemEvent, WorkItemRequested


@dataclass(frozen=True)
class WorkItemOpened:
    work_item_id: str
    run_id: str
    request: WorkItemRequested
    delegated_from: str | None = None
    actor: str = "system"
    waiting_reason: str = ""  # set: no assignee resolved yet, the item waits


Event = WorkItemOpened | WorkItemEvent | StepFailed


def is_published(event: Event) -> bool:
    """Contract payloads go to Kafka (through the outbox); core-only events do not."""
    return isinstance(event, Payload)
