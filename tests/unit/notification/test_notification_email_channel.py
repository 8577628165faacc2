"""SmtpChannel against a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default

import pytest
from receivers import MailSink, free_port

from services.notification.channels.base import Channel, ChannelError
from services.notification.channels.email import SmtpChannel
from services.notification.core.model import Delivery, UserContact

T0 = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
ADA = UserContact("u-ada", email="ada@example.com", channels=("email",))
DELIVERY = Delivery(
    id="0123456789abcdef0123456789abcdef",
    source_event_id="evt-1",
    source_type="WorkItemAssigned",
    recipient="u-ada",
    channel="email",
    template="work_item_assigned",
    subject="New work item: Grüße ${x} {0.__class__}",
    body='"Grüße" in onboarding is now assigned to you.\n\nOpen it: /work/wi-1\n',
    next_attempt_at=T0,
    created_at=T0,
)


def channel(port: int) -> SmtpChannel:
    return SmtpChannel("127.0.0.1", port, "Baton <baton@notify.example.com>", timeout=5)


async def test_sends_the_mail_with_a_message_id_from_the_delivery(
    smtp_server: tuple[MailSink, int],
) -> None:
    sink, port = smtp_server
    sender: Channel = channel(port)

    await sender.send(DELIVERY, ADA)

    [envelope] = sink.messages
    assert envelope.mail_from == "baton@notify.example.com"
    assert envelope.rcpt_tos == ["ada@example.com"]
    assert isinstance(envelope.content, bytes)
    mail = message_from_bytes(envelope.content, policy=default)
    assert mail["Message-ID"] == f"<{DELIVERY.id}@notify.example.com>"
    assert mail["Subject"] == DELIVERY.subject
    assert mail["To"] == "ada@example.com"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["X-Baton-Event-Id"] == "evt-1"
    assert mail.get_content().replace("\r\n", "\n") == DELIVERY.body


async def test_a_resend_carries_the_same_message_id(smtp_server: tuple[MailSink, int]) -> None:
    sink, port = smtp_server

    await channel(port).send(DELIVERY, ADA)
    await channel(port).send(DELIVERY, ADA)

    ids = {message_from_bytes(m.content)["Message-ID"] for m in sink.messages}
    assert len(sink.messages) == 2 and len(ids) == 1


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [("550 5.1.1 no such user", False), ("451 4.3.0 mailbox busy", True)],
)
async def test_a_refused_recipient_is_classified_by_reply_code(
    smtp_server: tuple[MailSink, int], reply: str, retryable: bool
) -> None:
    sink, port = smtp_server
    sink.rcpt_reply = reply

    with pytest.raises(ChannelError) as caught:
        await channel(port).send(DELIVERY, ADA)

    assert caught.value.retryable is retryable
    assert sink.messages == []


async def test_an_unreachable_server_is_retryable() -> None:
    with pytest.raises(ChannelError) as caught:
        await channel(free_port()).send(DELIVERY, ADA)

    assert caught.value.retryable


@pytest.mark.parametrize(
    "contact",
    [None, UserContact("u-cy", chat_handle="@cy"), UserContact("u", email="a@b.c\r\nBcc: x@y.z")],
)
async def test_no_usable_address_is_a_permanent_error(contact: UserContact | None) -> None:
    with pytest.raises(ChannelError) as caught:
        await channel(free_port()).send(DELIVERY, contact)

    assert not caught.value.retryable
