"""Templates: one per event type, user text substituted literally, never interpreted."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from contracts.envelope import Envelope, Payload
from contracts.events.runs import RunCanceled, RunCompleted, RunErrored, RunStarted
from contracts.events.workitems import (
    Contact,
    WorkItemAssigned,
    WorkItemCanceled,
    WorkItemClaimed,
    WorkItemCompleted,
    WorkItemDelegated,
    WorkItemEscalated,
    WorkItemReassigned,
    WorkItemReminderDue,
)
from contracts.registry import REGISTRY
from services.notification.core.templates import (
    MAX_SUBJECT_CHARS,
    NOTABLE_TYPES,
    TEMPLATES,
    Compiled,
    notable_types,
    render,
    template_name,
    template_values,
)

DUE = datetime(2025, 3, 20, 17, 0, tzinfo=UTC)
ITEM = {
    "work_item_id": "wi-42",
    "step": "collect_hr_form",
    "title": "HR form for Ada",
    "orchestration": "onboarding",
    "recipients": ["u-ada"],
    "due_at": DUE,
}
RUN = {"orchestration": "onboarding", "version": 3, "record_key": "Account/42"}

EVERY_TEMPLATED_EVENT: list[tuple[Payload, str]] = [
    (WorkItemAssigned(**ITEM), "work_item_assigned"),
    (WorkItemReassigned(**ITEM, previous_assignee="u-bob"), "work_item_reassigned"),
    (WorkItemDelegated(**ITEM, delegate="u-cy"), "work_item_delegated"),
    (WorkItemReminderDue(**ITEM), "work_item_reminder"),
    (WorkItemReminderDue(**ITEM, overdue=True), "work_item_overdue"),
    (WorkItemEscalated(**ITEM, action="reassign_to_manager"), "work_item_escalated"),
    (WorkItemCanceled(**ITEM, reason="run canceled"), "work_item_canceled"),
    (WorkItemCompleted(**ITEM, decision="approved"), "work_item_completed"),
    (RunCompleted(**RUN, duration_seconds=3725), "run_completed"),
    (RunErrored(**RUN, stage="it", step="payroll", error="HTTP 503"), "run_errored"),
    (RunCanceled(**RUN, reason="duplicate"), "run_canceled"),
]

EventFactory = Callable[..., Envelope]


@pytest.mark.parametrize(("payload", "name"), EVERY_TEMPLATED_EVENT)
def test_each_event_type_has_its_template(
    make_event: EventFactory, payload: Payload, name: str
) -> None:
    rendered = render(make_event(payload))

    assert rendered is not None
    assert rendered.template == name
    assert "$" not in rendered.subject + rendered.body, "every placeholder is filled"


@pytest.mark.parametrize(("payload", "name"), EVERY_TEMPLATED_EVENT)
def test_every_placeholder_has_a_value(
    make_event: EventFactory, payload: Payload, name: str
) -> None:
    template = TEMPLATES[name]
    values = template_values(make_event(payload))

    needed = set(template.subject.get_identifiers()) | set(template.body.get_identifiers())
    assert needed <= values.keys()


def dumped_values(envelope: Envelope) -> dict[str, str]:
    """template_values as it was, from the payload dumped by pydantic."""
    from services.notification.core import templates

    raw = envelope.payload.model_dump(exclude={"contacts"})
    values = {key: templates._text(value) for key, value in raw.items()}
    for key, fallback in templates._FALLBACKS.items():
        if not raw.get(key):
            values[key] = fallback
    values["run_id"] = templates._text(envelope.run_id)
    values["due"] = templates._text(raw.get("due_at")) if raw.get("due_at") else "no due date"
    values["duration"] = templates._duration(raw.get("duration_seconds"))
    values["link"] = templates._link(envelope)
    return values


@pytest.mark.parametrize(("payload", "name"), EVERY_TEMPLATED_EVENT)
def test_the_values_are_those_of_the_dumped_payload(
    make_event: EventFactory, payload: Payload, name: str
) -> None:
    """template_values reads the payload's fields as they are, not dumped: the same text."""
    fields = type(payload).model_fields
    if "contacts" in fields:
        payload = payload.model_copy(update={"contacts": [
            Contact(user="u-ada", email="ada@example.com")]})
    if "outputs" in fields:
        payload = payload.model_copy(update={"outputs": {"n": [1, {"x": None}], "ok": True}})
    envelope = make_event(payload)

    assert template_values(envelope) == dumped_values(envelope)
    assert "ada@example.com" not in " ".join(template_values(envelope).values())


def test_no_notable_payload_holds_a_model_but_its_contacts() -> None:
    """What template_values reads as it is (a nested model would read otherwise dumped)."""
    for (type_, _), model in REGISTRY.items():
        if type_ in NOTABLE_TYPES:
            for name, field in model.model_fields.items():
                annotation = str(field.annotation)
                assert name == "contacts" or not any(
                    isinstance(kind, type) and issubclass(kind, BaseModel)
                    for kind in getattr(field.annotation, "__args__", (field.annotation,))
                ), (type_, name, annotation)


@settings(max_examples=300)
@given(text=st.text(alphabet="$ab{}_ .", max_size=30),
       values=st.dictionaries(st.sampled_from(["a", "b", "a_b", "_"]), st.text(max_size=5)))
def test_a_compiled_template_fills_in_as_safe_substitute_does(text: str,
                                                             values: dict[str, str]) -> None:
    from string import Template

    template = Template(text)
    assert Compiled.of(template).substitute(values) == template.safe_substitute(values)


def test_every_template_is_reachable() -> None:
    assert {name for _, name in EVERY_TEMPLATED_EVENT} == TEMPLATES.keys()


@pytest.mark.parametrize(
    "payload",
    [WorkItemClaimed(**ITEM), RunStarted(**RUN)],
)
def test_events_without_a_template_render_nothing(
    make_event: EventFactory, payload: Payload
) -> None:
    envelope = make_event(payload)

    assert template_name(envelope) is None
    assert render(envelope) is None


def test_work_item_body_names_title_orchestration_due_date_and_link(
    make_event: EventFactory,
) -> None:
    rendered = render(make_event(WorkItemAssigned(**ITEM)))

    assert rendered is not None
    assert rendered.subject == "New work item: HR form for Ada"
    for text in ("HR form for Ada", "onboarding", "2025-03-20 17:00 UTC", "/work/wi-42"):
        assert text in rendered.body


def test_run_body_links_to_the_run(make_event: EventFactory) -> None:
    rendered = render(make_event(RunCompleted(**RUN, duration_seconds=3725), run_id="r/7"))

    assert rendered is not None
    assert "/runs/r%2F7" in rendered.body
    assert "1h 2m 5s" in rendered.body
    assert "Account/42" in rendered.body


def test_missing_due_date_and_reason_read_naturally(make_event: EventFactory) -> None:
    item = {**ITEM, "due_at": None}
    rendered = render(make_event(WorkItemCanceled(**item)))

    assert rendered is not None
    assert "Due: no due date" in rendered.body
    assert "Reason: none given" in rendered.body


@pytest.mark.parametrize(
    "hostile",
    ["${x}", "$title", "$$", "{0.__class__}", "{title}", "%(title)s", "__import__('os')"],
)
def test_hostile_user_text_comes_out_literally(make_event: EventFactory, hostile: str) -> None:
    payload = WorkItemReassigned(
        **{**ITEM, "title": hostile, "orchestration": hostile}, reason=hostile
    )
    rendered = render(make_event(payload))

    assert rendered is not None
    assert rendered.subject == f"Work item reassigned: {hostile}"
    assert f'"{hostile}"' in rendered.body
    assert f"Reason: {hostile}" in rendered.body


def test_subject_cannot_inject_headers_and_stays_short(make_event: EventFactory) -> None:
    title = "Sign\r\nBcc: everyone@example.com\x00" + "x" * 500
    rendered = render(make_event(WorkItemAssigned(**{**ITEM, "title": title})))

    assert rendered is not None
    assert "\r" not in rendered.subject and "\n" not in rendered.subject
    assert "\x00" not in rendered.subject + rendered.body
    assert len(rendered.subject) == MAX_SUBJECT_CHARS


def test_link_path_escapes_the_work_item_id(make_event: EventFactory) -> None:
    payload = WorkItemAssigned(**{**ITEM, "work_item_id": "../admin?x=1"})
    rendered = render(make_event(payload))

    assert rendered is not None
    assert "/work/..%2Fadmin%3Fx%3D1" in rendered.body


def test_without_operators_run_events_are_not_worth_parsing() -> None:
    """Run events tell the operators only: with none configured the consumer skips them."""
    assert notable_types(operators=True) == NOTABLE_TYPES
    assert NOTABLE_TYPES - notable_types(operators=False) == {
        "RunCompleted", "RunErrored", "RunCanceled"}
