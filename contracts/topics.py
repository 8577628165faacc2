"""The topics Baton uses: one declarative list, created explicitly at start-up.

Each topic names who may write it and who reads it.  ``infra/kafka_acls.py`` turns that into
Kafka ACLs, one principal per service, so that a service that may not write a topic cannot
(a forged step outcome from the trigger's credentials is refused by the broker).
``UPSTREAM`` is the systems that send record changes and read record updates and
notifications; ``OPERATORS`` read the dead letters.
"""

from __future__ import annotations

from dataclasses import dataclass

TRIGGER = "trigger"
COORDINATOR = "stage-coordinator"
STEP_RUNNER = "step-runner"
ASSIGNMENT = "assignment"
NOTIFICATION = "notification"
SERVICES = (TRIGGER, COORDINATOR, STEP_RUNNER, ASSIGNMENT, NOTIFICATION)
UPSTREAM = "upstream"
OPERATORS = "operators"


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    purpose: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    # Compacted: Kafka keeps the latest message of each key (a current state, re-readable
    # from the beginning); the others keep everything for their retention time.
    compacted: bool = False


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
ACCESS = "access"
DEFINITIONS = "definitions"

DEFAULT_PARTITIONS = 4

TOPICS: tuple[Topic, ...] = (
    Topic(RECORDS_CHANGES, DEFAULT_PARTITIONS, "record-change events from upstream systems",
          producers=(UPSTREAM,), consumers=(TRIGGER,)),
    Topic(COMMANDS, DEFAULT_PARTITIONS, "run commands: start, cancel, suspend, resume, retry",
          producers=(TRIGGER, COORDINATOR), consumers=(COORDINATOR,)),
    Topic(STEPS_DISPATCH, DEFAULT_PARTITIONS, "background steps for the step-runner",
          producers=(COORDINATOR,), consumers=(STEP_RUNNER,)),
    Topic(WORKITEMS_DISPATCH, DEFAULT_PARTITIONS, "interactive steps for the assignment service",
          producers=(COORDINATOR,), consumers=(ASSIGNMENT,)),
    Topic(STEPS_OUTCOMES, DEFAULT_PARTITIONS, "step completed / failed, back to the coordinator",
          producers=(STEP_RUNNER, ASSIGNMENT), consumers=(COORDINATOR,)),
    Topic(WORKITEMS_EVENTS, DEFAULT_PARTITIONS,
          "work item lifecycle, for notification, audit, who takes part in a run, and the"
          " interactive steps' outcomes (a completion)",
          producers=(ASSIGNMENT,), consumers=(NOTIFICATION, COORDINATOR)),
    Topic(RUNS_EVENTS, DEFAULT_PARTITIONS, "run and stage lifecycle, for listeners",
          producers=(COORDINATOR,), consumers=(NOTIFICATION, UPSTREAM)),
    Topic(NOTIFICATIONS, DEFAULT_PARTITIONS,
          "notifications for external fan-out consumers, who drop repeats by event id",
          producers=(NOTIFICATION,), consumers=(UPSTREAM,)),
    Topic(RECORDS_UPDATES, DEFAULT_PARTITIONS, "record updates Baton publishes back upstream",
          producers=(STEP_RUNNER,), consumers=(UPSTREAM,)),
    # Read whole by every consumer (no group, every partition), so one partition each:
    # one order, and one end offset to catch up with.
    Topic(ACCESS, 1, "the directory's roles, groups and queues and the token facts, for the"
          " token checks of every service", producers=(ASSIGNMENT,),
          consumers=(TRIGGER, COORDINATOR, ASSIGNMENT, NOTIFICATION), compacted=True),
    Topic(DEFINITIONS, 1, "each published definition version, for the coordinator",
          producers=(TRIGGER,), consumers=(COORDINATOR,), compacted=True),
    Topic(DLQ, 1, "messages that could not be parsed or handled, with the reason",
          producers=SERVICES, consumers=(OPERATORS,)),
)


def used_by(principal: str) -> tuple[Topic, ...]:
    """The topics a service (or outside party) writes or reads."""
    return tuple(t for t in TOPICS if principal in t.producers or principal in t.consumers)
