"""The assignment service's pure core: work items, the directory, who may do what.

decide(item, command, now, directory) -> Decision | Rejection reads; evolve(item, event,
at) -> item is the only code that changes a work item.  No I/O, no clock, no randomness:
the service shell brings the time, the ids, the actor and the directory.
"""

from services.assignment.core.access import Verb, can_act, can_see
from services.assignment.core.commands import (
    Approve,
    AssignWaiting,
    Cancel,
    Claim,
    Command,
    Comment,
    Complete,
    Delegate,
    Escalate,
    FireReminder,
    OpenWorkItem,
    Reassign,
    Reject,
    Release,
)
from services.assignment.core.decide import apply, decide, handle
from services.assignment.core.decision import Decision
from services.assignment.core.directory import (
    Directory,
    DirectoryError,
    Group,
    Queue,
    Resolution,
    User,
)
from services.assignment.core.events import Event, WorkItemOpened
from services.assignment.core.evolve import InvalidEvent, evolve, replay
from services.assignment.core.forms import validate_values
from services.assignment.core.rejection import FieldError, Rejection
from services.assignment.core.timers import Timer
from services.assignment.core.workitem import TRANSITIONS, AuditEntry, Status, WorkItem

__all__ = [
    "TRANSITIONS",
    "Approve",
    "AssignWaiting",
    "AuditEntry",
    "Cancel",
    "Claim",
    "Command",
    "Comment",
    "Complete",
    "Decision",
    "Delegate",
    "Directory",
    "DirectoryError",
    "Escalate",
    "Event",
    "FieldError",
    "FireReminder",
    "Group",
    "InvalidEvent",
    "OpenWorkItem",
    "Queue",
    "Reassign",
    "Reject",
    "Rejection",
    "Release",
    "Resolution",
    "Status",
    "Timer",
    "User",
    "Verb",
    "WorkItem",
    "WorkItemOpened",
    "apply",
    "can_act",
    "can_see",
    "decide",
    "evolve",
    "handle",
    "replay",
    "validate_values",
]
