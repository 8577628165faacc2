"""Planning: who gets what on which channel, with ids that make redelivery harmless."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta

from contracts.envelope import Envelope
from contracts.events.runs import RunErrored, RunStarted
from contracts.events.workitems import (
    Contact,
    WorkItemAssigned,
    WorkItemClaimed,
    WorkItemCompleted,
)
from services.notification.core.model import (
    Delivery,
    UserContact,
    contact_for,
    delivery_id,
    fanout_id,
)
from services.notification.core.plan import (
    ContactBook,
    channels_for,
    contact_book,
    plan_deliveries,
    plan_notice,
    recipients_of,
)

EventFactory = Callable[..., Envelope]

ADA = UserContact("u-ada", email="ada@example.com", chat_handle="@ada", channels=("email", "chat"))
BOB = UserContact("u-bob", email="bob@example.com", chat_handle="@bob", channels=("chat",))
CY = UserContact("u-cy", email=None, chat_handle="@cy", channels=("email",))
DIRECTORY = ContactBook([ADA, BOB, CY])


def assigned(*recipients: str) -> WorkItemAssigned:
    return WorkItemAssigned(
        work_item_id="wi-1",
        step="s",
        title="Review",
        orchestration="onboarding",
        recipients=list(recipients),
    )


def routes(deliveries: list[Delivery]) -> list[tuple[str, str]]:
    return [(d.recipient, d.channel) for d in deliveries]


def test_each_preferred_reachable_channel_of_each_recipient(
    make_event: EventFactory, now: datetime
) -> None:
    deliveries = plan_deliveries(make_event(assigned("u-ada", "u-bob")), DIRECTORY, now)

    assert routes(deliveries) == [
        ("u-ada", "email"),
        ("u-ada", "chat"),
        ("u-bob", "chat"),
    ]
    assert all(d.status == "pending" and d.attempts == 0 for d in deliveries)
    assert all(d.next_attempt_at == now and d.last_error is None for d in deliveries)
    assert {d.template for d in deliveries} == {"work_item_assigned"}
    assert {d.subject for d in deliveries} == {"New work item: Review"}


def test_a_channel_without_an_address_is_skipped(make_event: EventFactory, now: datetime) -> None:
    notice = plan_notice(make_event(assigned("u-cy")), DIRECTORY, now)

    assert notice is not None and routes(list(notice.deliveries)) == []
    assert not notice.reaches_someone  # so it is not fanned out either


def test_unknown_recipients_and_duplicates_are_skipped(
    make_event: EventFactory, now: datetime
) -> None:
    envelope = make_event(assigned("u-ghost", "u-bob", "u-bob", ""))

    assert routes(plan_deliveries(envelope, DIRECTORY, now)) == [("u-bob", "chat")]


def test_unknown_and_repeated_channel_preferences_are_ignored() -> None:
    contact = UserContact("u", email="u@example.com", channels=("sms", "email", "kafka", "email"))

    assert channels_for(contact) == ["email"]


def test_ids_are_sha256_of_event_recipient_channel(make_event: EventFactory, now: datetime) -> None:
    deliveries = plan_deliveries(make_event(assigned("u-ada"), event_id="e-9"), DIRECTORY, now)

    expected = hashlib.sha256(b"e-9:u-ada:email").hexdigest()[:32]
    assert deliveries[0].id == expected == delivery_id("e-9", "u-ada", "email")
    assert len({d.id for d in deliveries}) == len(deliveries)


def test_a_redelivered_event_plans_the_same_ids(make_event: EventFactory, now: datetime) -> None:
    first = plan_deliveries(make_event(assigned("u-ada", "u-bob")), DIRECTORY, now)
    again = plan_deliveries(
        make_event(assigned("u-ada", "u-bob")), DIRECTORY, now + timedelta(hours=1)
    )

    assert [d.id for d in first] == [d.id for d in again]


def test_different_events_plan_different_ids(make_event: EventFactory, now: datetime) -> None:
    one = plan_deliveries(make_event(assigned("u-ada"), event_id="e-1"), DIRECTORY, now)
    two = plan_deliveries(make_event(assigned("u-ada"), event_id="e-2"), DIRECTORY, now)

    assert not {d.id for d in one} & {d.id for d in two}


def test_deliveries_remember_the_source_for_later_publishing(
    make_event: EventFactory, now: datetime
) -> None:
    envelope = make_event(assigned("u-ada"), event_id="e-7", run_id="run-7")
    delivery = plan_deliveries(envelope, DIRECTORY, now)[0]

    assert delivery.source_event_id == "e-7"
    assert delivery.source_type == "WorkItemAssigned"
    assert delivery.run_id == "run-7"
    assert delivery.correlation_id == envelope.correlation_id


def test_run_events_go_to_the_operators(make_event: EventFactory, now: datetime) -> None:
    payload = RunErrored(orchestration="o", version=1, stage="s", step="t", error="boom")
    envelope = make_event(payload)

    deliveries = plan_deliveries(envelope, DIRECTORY, now, operators=["u-bob"])

    assert routes(deliveries) == [("u-bob", "chat")]
    assert recipients_of(envelope) == []


def test_completion_notifies_only_listed_recipients(
    make_event: EventFactory, now: datetime
) -> None:
    completed = WorkItemCompleted(work_item_id="wi-1", step="s", title="Review")

    notice = plan_notice(make_event(completed), DIRECTORY, now, operators=["u-bob"])

    assert notice is not None and not notice.reaches_someone


def test_events_without_a_template_plan_nothing(make_event: EventFactory, now: datetime) -> None:
    claimed = WorkItemClaimed(work_item_id="wi-1", step="s", recipients=["u-ada"])
    started = RunStarted(orchestration="o", version=1)

    assert plan_notice(make_event(claimed), DIRECTORY, now) is None
    assert plan_notice(make_event(started), DIRECTORY, now, operators=["u-ada"]) is None
    assert plan_deliveries(make_event(claimed), DIRECTORY, now) == []


def test_email_stands_in_when_no_preferred_channel_is_reachable() -> None:
    chat_only = UserContact("u", email="u@example.com", chat_handle=None, channels=("chat",))
    unreachable = UserContact("v", email=None, chat_handle=None, channels=("chat",))

    assert channels_for(chat_only) == ["email"]
    assert channels_for(unreachable) == []


def test_nobody_is_told_about_their_own_action(make_event: EventFactory, now: datetime) -> None:
    by_ada = WorkItemCompleted(work_item_id="wi-1", step="s", title="Review", actor="u-ada",
                               recipients=["u-ada"])
    by_delegate = WorkItemCompleted(work_item_id="wi-1", step="s", title="Review",
                                    actor="u-bob", recipients=["u-ada", "u-bob"])

    to_nobody = plan_notice(make_event(by_ada), DIRECTORY, now)
    assert to_nobody is not None and not to_nobody.reaches_someone
    assert routes(plan_deliveries(make_event(by_delegate), DIRECTORY, now)) == [
        ("u-ada", "email"), ("u-ada", "chat")]


def test_a_work_item_event_reaches_its_recipients_by_the_contacts_it_carries(
    make_event: EventFactory, now: datetime
) -> None:
    """Notification reads no directory: the event says how to reach each recipient, and
    each delivery keeps the address it goes to (a retry needs no lookup either)."""
    event = assigned("u-ada", "u-bob", "u-gone").model_copy(update={"contacts": [
        Contact(user="u-ada", email="ada@example.com", chat_handle="@ada",
                channels=["chat", "email"]),
        Contact(user="u-bob", email="bob@example.com", chat_handle="@bob", channels=["chat"]),
    ]})
    envelope = make_event(event)

    book = contact_book(envelope, operators=[], enabled={"email"})  # no chat webhook here
    deliveries = plan_deliveries(envelope, book, now)

    assert [(d.recipient, d.channel, d.address) for d in deliveries] == [
        ("u-ada", "email", "ada@example.com"), ("u-bob", "email", "bob@example.com")]
    assert contact_for(deliveries[0]) == UserContact("u-ada", email="ada@example.com")


def test_run_events_reach_the_operators_by_their_configured_contacts(
    make_event: EventFactory, now: datetime
) -> None:
    envelope = make_event(RunErrored(orchestration="o", version=1, stage="s", step="t",
                                     error="boom"))
    ops = UserContact("ops", email="ops@example.com")

    deliveries = plan_deliveries(envelope, contact_book(envelope, [ops], {"email"}), now,
                                 operators=["ops"])

    assert [(d.recipient, d.address) for d in deliveries] == [("ops", "ops@example.com")]


def test_the_fan_out_id_derives_from_the_source_event_as_the_stored_one_did() -> None:
    """Consumers of ``notifications`` saw ``delivery_id(event, "*", "kafka")`` as the event
    id before the fan-out stopped being stored: the id, and so their dedupe, is unchanged."""
    assert fanout_id("e-9") == delivery_id("e-9", "*", "kafka")
    assert fanout_id("e-9") != fanout_id("e-10")
