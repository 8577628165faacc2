"""Completing a work item: a validated form, or an approval's decision.

Both end the step: the WorkItemCompleted on workitems.events carries the step's attempt and
outputs, and the coordinator applies it to the run as the step's outcome (decision 17).
"""

from __future__ import annotations

from typing import Any, Literal

from contracts.events.workitems import WorkItemClaimed, WorkItemCompleted
from services.assignment.core.commands import Approve, Complete, Reject
from services.assignment.core.decision import Decision, about, check, check_text
from services.assignment.core.directory import Directory
from services.assignment.core.events import Event
from services.assignment.core.forms import approval_schema, validate_values
from services.assignment.core.rejection import Rejection
from services.assignment.core.workitem import WorkItem

ApprovalDecision = Literal["approved", "rejected"]


def complete(item: WorkItem, command: Complete, directory: Directory) -> Decision | Rejection:
    if item.kind == "approval":
        return Rejection("an approval work item is approved or rejected, not completed", "invalid")
    rejected = check(item, command.actor, "complete", "complete", directory)
    if rejected:
        return rejected
    outputs = validate_values(item.form, command.values)
    if isinstance(outputs, Rejection):
        return outputs
    return Decision(events=_finish(item, command.actor, outputs, None, ""))


def approve(item: WorkItem, command: Approve, directory: Directory) -> Decision | Rejection:
    return _decide_approval(item, command, "approved", directory)


def reject(item: WorkItem, command: Reject, directory: Directory) -> Decision | Rejection:
    return _decide_approval(item, command, "rejected", directory)


def _decide_approval(
    item: WorkItem, command: Approve | Reject, decision: ApprovalDecision, directory: Directory
) -> Decision | Rejection:
    """The form's values join the verdict in the outputs (``decision`` and ``comment`` win)."""
    actor, comment = command.actor, command.comment
    verb: Literal["approve", "reject"] = "approve" if decision == "approved" else "reject"
    if item.kind != "approval":
        return Rejection(f"only an approval work item can be {decision}", "invalid")
    rejected = check(item, actor, verb, verb, directory)
    rejected = rejected or check_text("comment", comment, required=False)
    if rejected:
        return rejected
    values = validate_values(approval_schema(item.form, decision), command.values)
    if isinstance(values, Rejection):
        return values
    outputs = {**values, "decision": decision, "comment": comment}
    return Decision(events=_finish(item, actor, outputs, decision, comment))


def _finish(
    item: WorkItem,
    actor: str,
    outputs: dict[str, Any],
    decision: ApprovalDecision | None,
    comment: str,
) -> tuple[Event, ...]:
    """Completion events; an unclaimed pooled item is claimed first (see access.py)."""
    claimed: tuple[Event, ...] = ()
    if item.is_pooled and item.claimed_by is None:
        claimed = (WorkItemClaimed(**about(item, actor)),)
    # The run's starter hears that the item is done, as its holders do (notification
    # leaves out whoever did it, and anyone the directory cannot reach).
    heard = [*item.audience(), *([item.started_by] if item.started_by else [])]
    completed = WorkItemCompleted(**about(item, actor, recipients=list(dict.fromkeys(heard))),
                                  decision=decision, comment=comment, attempt=item.attempt,
                                  outputs=outputs)
    return (*claimed, completed)
