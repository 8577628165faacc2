"""The topics Baton uses: one declarative list, created explicitly at start-up."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    purpose: str


RECORDS_CHANGES = "records.changes"
COMMANDS = "commands"
STEPS_DISPATCH = "steps.dispatch"
WORKITEMS_DISPATCH = "workitems.dispatch"
STEPS_OUTCOMES = "steps.outcomes"
WORKITEMS_EVENTS = "workitems.events"
RUNS_EVENTS = "runs.events"
NOTIFICATIONS = "notifications"
RECORDS_UPDATES = "records.updates"
DLQ = "dlq"

DEFAULT_PARTITIONS = 4

TOPICS: tuple[Topic, ...] = (
    Topic(RECORDS_CHANGES, DEFAULT_PARTITIONS, "record-change events from upstream systems"),
    Topic(COMMANDS, DEFAULT_PARTITIONS, "run commands: start, cancel, suspend, resume, retry"),
    Topic(STEPS_DISPATCH, DEFAULT_PARTITIONS, "background steps for the step-runner"),
    Topic(WORKITEMS_DISPATCH, DEFAULT_PARTITIONS, "interactive steps for the assignment service"),
    Topic(STEPS_OUTCOMES, DEFAULT_PARTITIONS, "step completed / failed, back to the coordinator"),
    Topic(WORKITEMS_EVENTS, DEFAULT_PARTITIONS, "work item lifecycle, for notification and audit"),
    Topic(RUNS_EVENTS, DEFAULT_PARTITIONS, "run and stage lifecycle, for listeners"),
    Topic(NOTIFICATIONS, DEFAULT_PARTITIONS, "notifications for external fan-out consumers"),
    Topic(RECORDS_UPDATES, DEFAULT_PARTITIONS, "record updates Baton publishes back upstream"),
    Topic(DLQ, 1, "messages that could not be parsed or handled, with the reason"),
)
