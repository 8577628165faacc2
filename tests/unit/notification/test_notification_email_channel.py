"""SmtpChannel against a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Session
from aiosmtpd.smtp import Envelope as SmtpEnvelope
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


class PeerSink(MailSink):
    """Also keeps the client address of each message: one per SMTP connection."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: list[object] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        self.peers.append(session.peer)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def peer_sink() -> Iterator[tuple[PeerSink, int]]:
    sink, port = PeerSink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


async def test_one_session_carries_many_mails_and_is_quit_at_shutdown(
    peer_sink: tuple[PeerSink, int],
) -> None:
    sink, port = peer_sink
    sender = channel(port)

    for _ in range(3):
        await sender.send(DELIVERY, ADA)
    await sender.aclose()
    await sender.send(DELIVERY, ADA)  # after a close, a new session

    assert len(sink.messages) == 4
    assert sink.peers[0] == sink.peers[1] == sink.peers[2] != sink.peers[3]


async def test_a_session_idle_too_long_is_not_reused(peer_sink: tuple[PeerSink, int]) -> None:
    sink, port = peer_sink
    now = [0.0]
    sender = SmtpChannel("127.0.0.1", port, "baton@notify.example.com", timeout=5,
                         idle_seconds=30, clock=lambda: now[0])

    await sender.send(DELIVERY, ADA)
    now[0] = 29.0
    await sender.send(DELIVERY, ADA)
    now[0] = 60.0
    await sender.send(DELIVERY, ADA)

    assert sink.peers[0] == sink.peers[1] != sink.peers[2]


async def test_a_session_the_server_dropped_is_replaced_and_the_mail_sent_once() -> None:
    port = free_port()
    first, second = PeerSink(), PeerSink()
    server = Controller(first, hostname="127.0.0.1", port=port)
    server.start()
    sender = channel(port)
    await sender.send(DELIVERY, ADA)
    server.stop()  # the server goes away with the idle session; another one takes the port
    server = Controller(second, hostname="127.0.0.1", port=port)
    server.start()
    try:
        await sender.send(DELIVERY, ADA)
    finally:
        server.stop()

    assert len(first.messages) == 1 and len(second.messages) == 1


def test_header_values_stay_on_their_line_and_addresses_are_plain() -> None:
    """The mail is built with the plain (compat32) classes, so the channel itself keeps every
    value to one header: a line break in a value never starts another header."""
    hostile = dataclasses.replace(DELIVERY, source_event_id="evt\r\nBcc: all@example.com",
                                  subject="Grüße\r\nBcc: all@example.com")
    mail = message_from_bytes(channel(1).compose(hostile, "ada@example.com").as_bytes(),
                              policy=default)
    assert mail["Bcc"] is None
    assert mail["X-Baton-Event-Id"] == "evt Bcc: all@example.com"
    assert mail["Subject"] == "Grüße Bcc: all@example.com"
    for bad in ("ada@example.com\r\nBcc: x@y.z", "Ada <ada@example.com>", "ada", "a b@c.d",
                "ada@", "@example.com"):
        with pytest.raises(ValueError, match="not an email address"):
            channel(1).compose(DELIVERY, bad)

