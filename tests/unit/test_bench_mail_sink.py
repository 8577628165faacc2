"""The bench's SMTP sink: the notification service's client gets its mail through, and the
sink counts each message once, however the client's bytes are cut or pipelined."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from bench.mail_sink import MailSinkProcess, SmtpSession

from services.notification.channels.email import SmtpChannel
from services.notification.core.model import Delivery, UserContact

T0 = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
ADA = UserContact("u-ada", email="ada@example.com", channels=("email",))


class FakeTransport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


def session() -> tuple[SmtpSession, FakeTransport, Any]:
    counter = SimpleNamespace(value=0)
    protocol = SmtpSession(counter)
    transport = FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport, counter


def codes(written: bytes) -> list[str]:
    """The reply codes, one per reply (a multi-line reply's last line)."""
    return [line[:3].decode() for line in written.split(b"\r\n") if line[3:4] == b" "]


def delivery(number: int) -> Delivery:
    return Delivery(id=f"d-{number}", source_event_id=f"evt-{number}",
                    source_type="WorkItemAssigned", recipient="u-ada", channel="email",
                    template="work_item_assigned", subject=f"Work item {number}",
                    body=".a line that starts with a dot\n\n.\n", next_attempt_at=T0,
                    created_at=T0)


def test_pipelined_commands_and_messages_cut_anywhere_are_each_counted_once() -> None:
    protocol, transport, counter = session()
    stream = (b"EHLO client\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n"
              b"Subject: one\r\n\r\n..stuffed\r\n.\r\n"
              b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n.\r\n"  # an empty message
              b"RSET\r\nNOOP\r\nQUIT\r\n")
    for index in range(len(stream)):  # one byte at a time: every cut there is
        protocol.data_received(stream[index:index + 1])

    assert counter.value == 2
    assert codes(transport.written) == ["220", "250", "250", "250", "354", "250",
                                        "250", "250", "354", "250", "250", "250", "221"]
    assert transport.closed


def test_out_of_order_and_unknown_commands_are_refused_and_count_nothing() -> None:
    protocol, transport, counter = session()

    protocol.data_received(b"RCPT TO:<b@x>\r\nMAIL FROM:<a@x>\r\nDATA\r\nSTARTTLS\r\n")

    assert counter.value == 0
    assert codes(transport.written) == ["220", "503", "250", "503", "502"]
    assert not transport.closed


async def test_the_notification_clients_mail_reaches_the_sink_process() -> None:
    sink = MailSinkProcess().start()
    try:
        channel = SmtpChannel("127.0.0.1", sink.port, "Baton <baton@notify.example.com>",
                              timeout=5)
        for number in range(3):  # over one kept session, as the service sends
            await channel.send(delivery(number), ADA)
        await channel.aclose()

        assert sink.messages == 3
    finally:
        sink.stop()
