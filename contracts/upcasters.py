"""Upcasters: turn an older payload version into the next one, at the edge.

Each function takes the payload dict of version N and returns version N+1.  A
consumer receiving version N applies them in a chain, so handlers see only the
newest model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PayloadDict = dict[str, Any]


def upcast_start_run_v1_v2(payload: PayloadDict) -> PayloadDict:
    """StartRun v1 named the orchestration ``orchestration_name`` and its inputs ``variables``."""
    return {
        "orchestration": payload["orchestration_name"],
        "inputs": payload.get("variables", {}),
    }


def upcast_step_requested_v1_v2(payload: PayloadDict) -> PayloadDict:
    """StepRequested v1 had one key per attempt; it stands in for the operation's key."""
    return {**payload, "operation_key": payload["idempotency_key"]}


def upcast_step_requested_v2_v3(payload: PayloadDict) -> PayloadDict:
    """StepRequested v2 did not carry the run's record: none is known (an action that
    defaults to the run's record then fails visibly, and the step can be retried)."""
    return {**payload, "record_key": None}


def upcast_work_item_event_v1_v2(payload: PayloadDict) -> PayloadDict:
    """Work-item events v1 carried no contacts: a recipient of one is reached by nobody
    but the fan-out (notification reads no directory)."""
    return {**payload, "contacts": []}


WORK_ITEM_EVENTS = (
    "WorkItemAssigned", "WorkItemClaimed", "WorkItemReleased", "WorkItemReassigned",
    "WorkItemDelegated", "WorkItemCompleted", "WorkItemCanceled", "WorkItemReminderDue",
    "WorkItemEscalated", "WorkItemCommented", "WorkItemAssignmentFailed",
)

def upcast_run_started_v1_v2(payload: PayloadDict) -> PayloadDict:
    """RunStarted v1 did not name the first stage: a StageStarted followed it."""
    return {**payload, "stage": None}


def upcast_stage_completed_v1_v2(payload: PayloadDict) -> PayloadDict:
    """StageCompleted v1 did not name the next stage: a StageStarted or RunCompleted followed."""
    return {**payload, "next_stage": None}


def upcast_run_completed_v1_v2(payload: PayloadDict) -> PayloadDict:
    """RunCompleted v1 did not name the last stage: a StageCompleted came before it."""
    return {**payload, "stage": None, "stage_duration_seconds": 0.0}


def upcast_work_item_completed_v2_v3(payload: PayloadDict) -> PayloadDict:
    """WorkItemCompleted v2 was not the step's outcome (a StepCompleted followed it)."""
    return {**payload, "attempt": 0, "outputs": {}}


def upcast_work_item_requested_v1_v2(payload: PayloadDict) -> PayloadDict:
    """WorkItemRequested v1 did not say who started the run."""
    return {**payload, "started_by": None}


UPCASTERS: dict[tuple[str, int], Callable[[PayloadDict], PayloadDict]] = {
    ("StartRun", 1): upcast_start_run_v1_v2,
    ("StepRequested", 1): upcast_step_requested_v1_v2,
    ("WorkItemRequested", 1): upcast_work_item_requested_v1_v2,
    ("StepRequested", 2): upcast_step_requested_v2_v3,
    ("RunStarted", 1): upcast_run_started_v1_v2,
    ("StageCompleted", 1): upcast_stage_completed_v1_v2,
    ("RunCompleted", 1): upcast_run_completed_v1_v2,
    ("WorkItemCompleted", 2): upcast_work_item_completed_v2_v3,
    **{(type_, 1): upcast_work_item_event_v1_v2 for type_ in WORK_ITEM_EVENTS},
}
