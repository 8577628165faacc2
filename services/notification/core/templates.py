"""One template per event type, rendered with ``string.Template`` safe substitution.

Values come from event payloads, which carry user text (titles, reasons, comments). They are
only ever substituted into our own template strings, never parsed as templates or format
strings themselves, so ``${x}`` or ``{0.__class__}`` in a title comes out literally.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from string import Template
from typing import Any
from urllib.parse import quote

from contracts.envelope import Envelope
from contracts.events.runs import RunEvent
from contracts.events.workitems import WorkItemEvent, WorkItemReminderDue
from contracts.registry import REGISTRY

MAX_VALUE_CHARS = 2_000
MAX_SUBJECT_CHARS = 200

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # keeps \t and \n in bodies
_FALLBACKS = {
    "title": "(untitled)",
    "reason": "none given",
    "comment": "none",
    "decision": "done",
}
_WORK_ITEM_FOOTER = "Orchestration: $orchestration\nStep: $step\nDue: $due\nOpen it: $link\n"
_RUN_FOOTER = "Run: $run_id\nRecord: $record_key\nOpen it: $link\n"


@dataclass(frozen=True, slots=True)
class Compiled:
    """A template cut once into its literal text and its placeholders, so that filling it
    is one join: ``Template.safe_substitute`` searches the text with a regular expression
    and calls back for each match, every time (a third of rendering)."""

    literals: tuple[str, ...]  # one more than the placeholders: around and between them
    placeholders: tuple[tuple[str, str], ...]  # (name, as written), kept when unknown

    @classmethod
    def of(cls, template: Template) -> Compiled:
        text, literals, placeholders = template.template, [], []
        pending, last = "", 0
        for match in template.pattern.finditer(text):
            pending += text[last:match.start()]
            last = match.end()
            name = match.group("named") or match.group("braced")
            if name is not None:
                literals.append(pending)
                placeholders.append((name, match.group()))
                pending = ""
            elif match.group("escaped") is not None:
                pending += template.delimiter
            else:  # an invalid placeholder: safe_substitute leaves it as it is
                pending += match.group()
        literals.append(pending + text[last:])
        return cls(tuple(literals), tuple(placeholders))

    def substitute(self, values: dict[str, str]) -> str:
        """``Template.safe_substitute(values)``."""
        parts = [self.literals[0]]
        for (name, written), literal in zip(self.placeholders, self.literals[1:], strict=True):
            parts.append(values.get(name, written))
            parts.append(literal)
        return "".join(parts)


@dataclass(frozen=True, slots=True)
class NotificationTemplate:
    name: str
    subject: Template
    body: Template
    compiled_subject: Compiled
    compiled_body: Compiled


@dataclass(frozen=True, slots=True)
class Rendered:
    template: str
    subject: str
    body: str


def _template(name: str, subject: str, body: str, footer: str) -> NotificationTemplate:
    subject_template, body_template = Template(subject), Template(body + "\n\n" + footer)
    return NotificationTemplate(name, subject_template, body_template,
                                Compiled.of(subject_template), Compiled.of(body_template))


TEMPLATES: dict[str, NotificationTemplate] = {
    t.name: t
    for t in (
        _template(
            "work_item_assigned",
            "New work item: $title",
            '"$title" in $orchestration is now assigned to $assignee.',
            _WORK_ITEM_FOOTER,
        ),
        _template(
            "work_item_reassigned",
            "Work item reassigned: $title",
            '$actor reassigned "$title" from $previous_assignee to $assignee.\nReason: $reason',
            _WORK_ITEM_FOOTER,
        ),
        _template(
            "work_item_delegated",
            "Work item delegated to you: $title",
            '$actor delegated "$title" in $orchestration to $delegate.',
            _WORK_ITEM_FOOTER,
        ),
        _template(
            "work_item_reminder",
            "Reminder: $title is due $due",
            'A reminder that "$title" in $orchestration is due $due.',
            _WORK_ITEM_FOOTER,
        ),
        _template(
            "work_item_overdue",
            "Overdue: $title was due $due",
            '"$title" in $orchestration was due $due and is still open.',
            _WORK_ITEM_FOOTER,
        ),
        _template(
            "work_item_escalated",
            "Escalated: $title",
            '"$title" in $orchestration was escalated ($action); '
            "it was assigned to $previous_assignee and is now with $assignee.",
            _WORK_ITEM_FOOTER,
        ),
        _template(
            "work_item_canceled",
            "Canceled: $title",
            '"$title" in $orchestration was canceled; nothing more to do.\nReason: $reason',
            _WORK_ITEM_FOOTER,
        ),
        _template(
            "work_item_completed",
            "Completed: $title",
            '$actor completed "$title" in $orchestration.\nDecision: $decision\nComment: $comment',
            _WORK_ITEM_FOOTER,
        ),
        _template(
            "run_completed",
            "Run completed: $orchestration v$version",
            "A run of $orchestration (version $version) completed in $duration.",
            _RUN_FOOTER,
        ),
        _template(
            "run_errored",
            "Run in error: $orchestration v$version",
            "A run of $orchestration (version $version) is in Error: step $step of stage "
            "$stage failed.\nError: $error\nRetry, resume or cancel it.",
            _RUN_FOOTER,
        ),
        _template(
            "run_canceled",
            "Run canceled: $orchestration v$version",
            "A run of $orchestration (version $version) was canceled.\nReason: $reason",
            _RUN_FOOTER,
        ),
    )
}

_TEMPLATE_BY_TYPE = {
    "WorkItemAssigned": "work_item_assigned",
    "WorkItemReassigned": "work_item_reassigned",
    "WorkItemDelegated": "work_item_delegated",
    "WorkItemEscalated": "work_item_escalated",
    "WorkItemCanceled": "work_item_canceled",
    "WorkItemCompleted": "work_item_completed",
    "RunCompleted": "run_completed",
    "RunErrored": "run_errored",
    "RunCanceled": "run_canceled",
}


# The event types that may notify someone: the consumer parses no others.
NOTABLE_TYPES = frozenset({*_TEMPLATE_BY_TYPE, "WorkItemReminderDue"})
# Those of them that tell the operators only (see plan.recipients_of).
OPERATOR_TYPES = frozenset(type_ for (type_, _), model in REGISTRY.items()
                           if type_ in NOTABLE_TYPES and issubclass(model, RunEvent))


def notable_types(*, operators: bool) -> frozenset[str]:
    """The event types worth parsing: without operators, run events notify nobody, so the
    consumer passes them over by their type header instead of parsing and planning them."""
    return NOTABLE_TYPES if operators else NOTABLE_TYPES - OPERATOR_TYPES


def template_name(envelope: Envelope) -> str | None:
    """The template for this event, or None: an event without one notifies nobody."""
    if isinstance(envelope.payload, WorkItemReminderDue):
        return "work_item_overdue" if envelope.payload.overdue else "work_item_reminder"
    return _TEMPLATE_BY_TYPE.get(envelope.type)


def render(envelope: Envelope) -> Rendered | None:
    name = template_name(envelope)
    return None if name is None else render_template(name, envelope)


def render_template(name: str, envelope: Envelope) -> Rendered:
    """The event's text with template ``name`` (its :func:`template_name`)."""
    template = TEMPLATES[name]
    values = template_values(envelope)
    subject = " ".join(_CONTROL.sub("", template.compiled_subject.substitute(values)).split())
    if len(subject) > MAX_SUBJECT_CHARS:
        subject = subject[: MAX_SUBJECT_CHARS - 1] + "…"
    body = _CONTROL.sub("", template.compiled_body.substitute(values))
    return Rendered(template=name, subject=subject, body=body)


def template_values(envelope: Envelope) -> dict[str, str]:
    """Every payload field as display text, plus the derived ``due``, ``link`` and ``run_id``."""
    # The payload's fields as they are (model_dump's copy of the same values, without
    # its cost): every notable payload's fields are plain values, lists and dicts.
    payload = envelope.payload
    raw = {name: getattr(payload, name) for name in type(payload).model_fields
           if name != "contacts"}  # addresses are not message text
    values = {key: _text(value) for key, value in raw.items()}
    for key, fallback in _FALLBACKS.items():
        if not raw.get(key):
            values[key] = fallback
    values["run_id"] = _text(envelope.run_id)
    values["due"] = _text(raw.get("due_at")) if raw.get("due_at") else "no due date"
    values["duration"] = _duration(raw.get("duration_seconds"))
    values["link"] = _link(envelope)
    return values


def _link(envelope: Envelope) -> str:
    payload = envelope.payload
    if isinstance(payload, WorkItemEvent):
        return "/work/" + quote(payload.work_item_id, safe="")
    if isinstance(payload, RunEvent) and envelope.run_id:
        return "/runs/" + quote(envelope.run_id, safe="")
    return "-"


def _text(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    return " ".join([*parts, f"{secs}s"]) if secs or not parts else " ".join(parts)
