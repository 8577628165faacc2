"""Plan deliveries: which event goes to whom, on which channel, saying what.

Planning is pure and deterministic: the same envelope always gives the same deliveries with
the same ids, so a redelivered event finds its deliveries stored already and sends nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from contracts.envelope import Envelope
from contracts.events.runs import RunEvent
from contracts.events.workitems import Contact, WorkItemEvent
from services.notification.core.model import (
    CHAT,
    EMAIL,
    Delivery,
    UserContact,
    delivery_id,
)
from services.notification.core.templates import Rendered, render_template, template_name


class ContactLookup(Protocol):
    def user(self, user_id: str, /) -> UserContact | None: ...


class ContactBook:
    """The contacts one event can reach, by user id."""

    def __init__(self, contacts: Iterable[UserContact] = ()) -> None:
        self._contacts: Mapping[str, UserContact] = {c.id: c for c in contacts}

    def user(self, user_id: str, /) -> UserContact | None:
        return self._contacts.get(user_id)


def contact_book(
    envelope: Envelope, operators: Iterable[UserContact], enabled: Collection[str]
) -> ContactBook:
    """Whom the event can reach: the contacts a work-item event carries, or the operators.

    Notification reads no directory: assignment puts each recipient's contact on the
    work-item event, and the operators' contacts are notification's own settings.
    """
    payload = envelope.payload
    if isinstance(payload, WorkItemEvent):
        return ContactBook(contact_from(contact, enabled) for contact in payload.contacts)
    return ContactBook(operators)


def contact_from(contact: Contact, enabled: Collection[str]) -> UserContact:
    """A contact whose preferences are cut to the channels this deployment has.

    Someone who prefers only a disabled channel (chat without a webhook) falls back to
    email, so they still hear about their work.
    """
    channels = tuple(c for c in contact.channels if c in enabled)
    return UserContact(
        id=contact.user,
        email=_text(contact.email),
        chat_handle=_text(contact.chat_handle),
        channels=channels or (EMAIL,),
    )


def _text(value: str | None) -> str | None:
    return (value.strip() or None) if value else None


def recipients_of(envelope: Envelope, operators: Sequence[str] = ()) -> list[str]:
    """The user ids to notify, in order, once each; fetch their contacts before planning.

    Work-item events name their recipients (assignment resolved them), less the person
    whose action it was: nobody is told what they just did themselves (the owner hears
    that their delegate completed an item; the one who completed it does not).  Run events
    go to the operators from configuration.
    """
    payload = envelope.payload
    if isinstance(payload, WorkItemEvent):
        ids: Sequence[str] = [user for user in payload.recipients if user != payload.actor]
    elif isinstance(payload, RunEvent):
        ids = operators
    else:
        ids = ()
    return list(dict.fromkeys(user_id for user_id in ids if user_id))


def channels_for(contact: UserContact) -> list[str]:
    """The contact's preferred channels that they can be reached on, in their order.

    When none of them can (chat preferred, but no chat handle on file), email stands in,
    so a person with an address always hears about their work.
    """
    reachable = {EMAIL: bool(contact.email), CHAT: bool(contact.chat_handle)}
    usable = [c for c in dict.fromkeys(contact.channels) if reachable.get(c, False)]
    return usable or ([EMAIL] if contact.email else [])


@dataclass(frozen=True, slots=True)
class Notice:
    """What one notable event tells: its rendered text and the people it reaches.

    ``rendered`` is None when it reaches nobody: nothing would carry the text.
    """

    envelope: Envelope
    rendered: Rendered | None
    deliveries: tuple[Delivery, ...]

    @property
    def reaches_someone(self) -> bool:
        """Only a notice someone receives is fanned out on the notifications topic."""
        return bool(self.deliveries)


def plan_notice(
    envelope: Envelope,
    contacts: ContactLookup,
    now: datetime,
    operators: Sequence[str] = (),
) -> Notice | None:
    """One delivery per reachable recipient and channel; None for an event without a template.

    Recipients without a contact are skipped (the directory may have lost them since
    assignment resolved them): that must not block the others.  The text is rendered
    only once someone is found to receive it: most notable events reach nobody (a
    completion tells no one but the owner, who is usually the one who completed it; a run
    event, the operators, often none), and rendering was most of planning's CPU.
    """
    name = template_name(envelope)
    if name is None:
        return None
    routes = [
        (user_id, channel, _address(contact, channel))
        for user_id in recipients_of(envelope, operators)
        if (contact := contacts.user(user_id)) is not None
        for channel in channels_for(contact)
    ]
    if not routes:
        return Notice(envelope, None, ())
    rendered = render_template(name, envelope)
    deliveries = tuple(
        _delivery(envelope, rendered, user_id, channel, now, address)
        for user_id, channel, address in routes
    )
    return Notice(envelope, rendered, deliveries)


def plan_deliveries(
    envelope: Envelope,
    contacts: ContactLookup,
    now: datetime,
    operators: Sequence[str] = (),
) -> list[Delivery]:
    """The person deliveries of :func:`plan_notice` (none for an event without a template)."""
    notice = plan_notice(envelope, contacts, now, operators)
    return list(notice.deliveries) if notice else []


def _address(contact: UserContact, channel: str) -> str | None:
    return {EMAIL: contact.email, CHAT: contact.chat_handle}.get(channel)


def _delivery(
    envelope: Envelope, rendered: Rendered, recipient: str, channel: str, now: datetime,
    address: str | None,
) -> Delivery:
    return Delivery(
        id=delivery_id(envelope.event_id, recipient, channel),
        source_event_id=envelope.event_id,
        source_type=envelope.type,
        recipient=recipient,
        channel=channel,
        template=rendered.template,
        subject=rendered.subject,
        body=rendered.body,
        next_attempt_at=now,
        created_at=now,
        run_id=envelope.run_id,
        correlation_id=envelope.correlation_id,
        address=address,
    )
