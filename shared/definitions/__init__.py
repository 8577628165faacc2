"""The orchestration definition language: model, duration parsing and publish-time checks."""

from shared.definitions.model import (
    Assignee,
    Decision,
    Definition,
    EscalationSpec,
    FaultPath,
    Retries,
    Stage,
    Step,
    StepKind,
    Trigger,
)

__all__ = [
    "Assignee",
    "Decision",
    "Definition",
    "EscalationSpec",
    "FaultPath",
    "Retries",
    "Stage",
    "Step",
    "StepKind",
    "Trigger",
]
