"""SmtpChannel's sessions on the event loop, against servers that behave in set ways.

A scripted server (below) either advertises PIPELINING and answers MAIL and RCPT only once
DATA has arrived, so a client that waited for each reply would stall, or does not advertise
it and counts a command sent before the previous one was answered.  STARTTLS and the login
run against aiosmtpd with a test certificate (tls/, valid until 2126).
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, Session
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from receivers import MailSink, free_port

from services.notification.channels.base import ChannelError
from services.notification.channels.email import SmtpChannel, wire_bytes
from services.notification.channels.smtp_auth import answers
from services.notification.channels.smtp_session import _Replies, _terminated
from services.notification.core.model import Delivery, UserContact
from services.notification.core.retry import RetryPolicy
from services.notification.dispatch import Dispatcher
from services.notification.metrics import NotificationMetrics

T0 = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
ADA = UserContact("u-ada", email="ada@example.com", channels=("email",))
TLS = Path(__file__).parent / "tls"
SENDER = "Baton <baton@notify.example.com>"


def delivery(number: int) -> Delivery:
    return Delivery(id=f"d-{number}", source_event_id=f"evt-{number}",
                    source_type="WorkItemAssigned", recipient="u-ada", channel="email",
                    template="work_item_assigned", subject=f"Work item {number}",
                    body="Open it: /work/wi-1\n", next_attempt_at=T0, created_at=T0,
                    address="ada@example.com")


@dataclass
class Server:
    """What the scripted server is told to do, and what it saw."""

    pipelining: bool = True
    rcpt_reply: bytes = b"250 OK"
    drop_reused_at_mail: bool = False  # a connection that carried a mail closes at the next MAIL
    drop_after_body: bool = False  # keeps the message, closes before answering
    connections: int = 0
    messages: list[bytes] = field(default_factory=list)
    early_commands: int = 0  # sent before the previous reply, to a server without PIPELINING


class ScriptedSession(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.buffer = b""
        self.in_data = False
        self.carried = 0
        self.held: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.server.connections += 1
        self.transport.write(b"220 scripted ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        commands = 0
        while not self.transport.is_closing():
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    return
                self.take_message(self.buffer[2:end + 2])
                self.buffer = self.buffer[end + 5:]
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return
            line, self.buffer = self.buffer[:end], self.buffer[end + 2:]
            commands += 1
            if not self.server.pipelining and commands > 1:
                self.server.early_commands += 1
            self.command(line)

    def command(self, line: bytes) -> None:
        assert self.transport is not None
        verb = line[:4].upper()
        if verb == b"EHLO":
            extension = b"250-PIPELINING\r\n" if self.server.pipelining else b""
            self.transport.write(b"250-scripted\r\n" + extension + b"250 SIZE 1000000\r\n")
        elif verb == b"MAIL":
            if self.server.drop_reused_at_mail and self.carried:
                self.transport.close()
                return
            self.answer(b"250 OK")
        elif verb == b"RCPT":
            self.answer(self.server.rcpt_reply)
        elif verb == b"DATA":
            if self.server.rcpt_reply.startswith(b"250"):
                self.in_data = True
                self.buffer = b"\r\n" + self.buffer  # an empty message ends at once too
                self.answer(b"354 go ahead", last=True)
            else:
                self.answer(b"503 no valid recipients", last=True)
        elif verb == b"QUIT":
            self.transport.write(b"221 bye\r\n")
            self.transport.close()
        else:
            self.transport.write(b"502 not here\r\n")

    def answer(self, reply: bytes, *, last: bool = False) -> None:
        """With PIPELINING, the envelope's replies wait for DATA (RFC 2920 lets them)."""
        assert self.transport is not None
        self.held.append(reply + b"\r\n")
        if last or not self.server.pipelining:
            self.transport.write(b"".join(self.held))
            self.held = []

    def take_message(self, stuffed: bytes) -> None:
        assert self.transport is not None
        self.in_data = False
        self.server.messages.append(re.sub(rb"(?m)^\.", b"", stuffed))
        self.carried += 1
        if self.server.drop_after_body:
            self.transport.close()
        else:
            self.transport.write(b"250 accepted\r\n")


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Server, int]]:
    server = Server()
    listening = await asyncio.get_running_loop().create_server(
        lambda: ScriptedSession(server), "127.0.0.1", 0)
    try:
        yield server, listening.sockets[0].getsockname()[1]
    finally:
        listening.close()


def channel(port: int, **options: Any) -> SmtpChannel:
    return SmtpChannel("127.0.0.1", port, SENDER, timeout=2, **options)


@pytest.mark.parametrize("pipelining", [True, False])
async def test_mail_goes_through_a_server_with_or_without_pipelining_on_one_session(
    scripted: tuple[Server, int], pipelining: bool
) -> None:
    server, port = scripted
    server.pipelining = pipelining
    sender = channel(port)

    for number in range(3):
        await sender.send(delivery(number), ADA)
    await sender.aclose()

    expected = [wire_bytes(sender.compose(delivery(n), "ada@example.com")) for n in range(3)]
    assert [_without_date(m) for m in server.messages] == [_without_date(m) for m in expected]
    assert server.connections == 1 and server.early_commands == 0


def _without_date(message: bytes) -> bytes:
    return re.sub(rb"Date: [^\r]*\r\n", b"", message)


async def test_a_reused_session_the_server_dropped_is_retried_once_on_a_new_one(
    scripted: tuple[Server, int],
) -> None:
    server, port = scripted
    server.drop_reused_at_mail = True
    sender = channel(port)

    await sender.send(delivery(1), ADA)
    await sender.send(delivery(2), ADA)  # its session closes at MAIL: the mail goes on a new one

    assert len(server.messages) == 2 and server.connections == 2


async def test_a_loss_after_the_message_went_out_is_not_sent_again(
    scripted: tuple[Server, int],
) -> None:
    server, port = scripted
    sender = channel(port)
    await sender.send(delivery(1), ADA)
    server.drop_after_body = True

    with pytest.raises(ChannelError) as caught:
        await sender.send(delivery(2), ADA)  # on the reused session, which dies after DATA

    assert caught.value.retryable  # the retry comes later, with the same Message-ID
    assert len(server.messages) == 2 and server.connections == 1


@pytest.mark.parametrize(("reply", "retryable"), [(b"550 5.1.1 no such user", False),
                                                  (b"452 4.2.2 mailbox full", True)])
async def test_a_refused_recipient_in_a_pipelined_envelope_is_classified_by_its_code(
    scripted: tuple[Server, int], reply: bytes, retryable: bool
) -> None:
    server, port = scripted
    server.rcpt_reply = reply
    sender = channel(port)

    with pytest.raises(ChannelError) as caught:
        await sender.send(delivery(1), ADA)
    server.rcpt_reply = b"250 OK"
    await sender.send(delivery(2), ADA)  # the refused envelope's session is not reused

    assert caught.value.retryable is retryable
    assert caught.value.message == (  # as smtplib's exception worded it
        f"recipient refused: {{'ada@example.com': ({reply[:3].decode()}, {reply[4:]!r})}}")
    assert len(server.messages) == 1 and server.connections == 2


async def test_a_server_that_never_answers_is_a_transient_error() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # no greeting, ever
        writer.close()

    listening = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        with pytest.raises(ChannelError) as caught:
            await SmtpChannel("127.0.0.1", listening.sockets[0].getsockname()[1], SENDER,
                              timeout=0.2).send(delivery(1), ADA)
    finally:
        listening.close()

    assert caught.value.retryable and "TimeoutError" in caught.value.message


class Store:
    """The dispatcher's store for first attempts: every outcome is taken."""

    async def insert_outcomes(self, deliveries: list[Delivery]) -> int:
        return len(deliveries)


async def test_the_dispatchers_bound_is_the_most_sessions_at_once(
    scripted: tuple[Server, int],
) -> None:
    server, port = scripted
    dispatcher = Dispatcher(Store(), {"email": channel(port)},  # type: ignore[arg-type]
                            RetryPolicy(base_delay_seconds=30),
                            NotificationMetrics(CollectorRegistry()), concurrency=3)

    sent = await dispatcher.send_new([delivery(number) for number in range(10)])

    assert sent == 10 and len(server.messages) == 10
    assert server.connections == 3  # one per send at once, each kept for the next ones


@dataclass
class Logins:
    seen: list[tuple[str, bytes, bytes]] = field(default_factory=list)

    def __call__(self, server: SMTP, session: Session, envelope: SmtpEnvelope, mechanism: str,
                 auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.seen.append((mechanism, auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"s3cret", handled=False)


@pytest.fixture
def tls_server() -> Any:
    """aiosmtpd requiring STARTTLS before anything, and a login (only over TLS)."""
    started: list[Controller] = []

    def start(**options: Any) -> tuple[MailSink, Logins, int]:
        sink, logins, port = MailSink(), Logins(), free_port()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(TLS / "cert.pem", TLS / "key.pem")
        controller = Controller(sink, hostname="127.0.0.1", port=port, tls_context=context,
                                require_starttls=True, auth_required=True,
                                authenticator=logins, **options)
        controller.start()
        started.append(controller)
        return sink, logins, port

    yield start
    for controller in started:
        controller.stop()


def tls_channel(port: int, password: str = "s3cret") -> SmtpChannel:
    trusted = ssl.create_default_context(cafile=str(TLS / "cert.pem"))
    return channel(port, starttls=True, username="ada", password=password,
                   tls_context=trusted)


@pytest.mark.parametrize(("excluded", "mechanism"), [([], "PLAIN"), (["PLAIN"], "LOGIN")])
async def test_starttls_then_login_with_the_first_method_the_server_offers(
    tls_server: Any, excluded: list[str], mechanism: str
) -> None:
    sink, logins, port = tls_server(auth_exclude_mechanism=excluded)
    sender = tls_channel(port)

    await sender.send(delivery(1), ADA)
    await sender.send(delivery(2), ADA)
    await sender.aclose()

    assert len(sink.messages) == 2
    assert logins.seen == [(mechanism, b"ada", b"s3cret")]  # once: the session was reused


async def test_a_refused_login_is_a_permanent_error(tls_server: Any) -> None:
    sink, logins, port = tls_server()

    with pytest.raises(ChannelError) as caught:
        await tls_channel(port, password="wrong").send(delivery(1), ADA)

    assert not caught.value.retryable and "SMTP 535" in caught.value.message
    assert sink.messages == [] and logins.seen


async def test_starttls_asked_of_a_server_without_it_is_a_permanent_error(
    scripted: tuple[Server, int],
) -> None:
    server, port = scripted

    with pytest.raises(ChannelError) as caught:
        await tls_channel(port).send(delivery(1), ADA)

    assert not caught.value.retryable and "STARTTLS" in caught.value.message
    assert server.messages == []


class Recorded(smtplib.SMTP):
    """smtplib without a socket: what it writes, with replies given in advance."""

    def __init__(self, replies: list[tuple[int, bytes]]) -> None:
        super().__init__()
        self.replies = replies
        self.written: list[bytes] = []

    def send(self, s: Any) -> None:
        self.written.append(s if isinstance(s, bytes) else s.encode())

    def getreply(self) -> tuple[int, bytes]:
        return self.replies.pop(0)


@given(st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"\r\n")) | st.sampled_from(
    [b"", b".", b".\r\n", b"a\r\n.\r\n..b", b"\r\n.\r\n"]))
def test_the_message_is_terminated_and_dot_stuffed_as_smtplib_does(message: bytes) -> None:
    session = Recorded([(354, b"go"), (250, b"ok")])

    session.data(message)

    assert session.written[-1] == _terminated(message)


@pytest.mark.parametrize("method", ["CRAM-MD5", "PLAIN", "LOGIN"])
def test_the_login_answers_are_smtplibs(method: str) -> None:
    session = smtplib.SMTP()
    session.user, session.password = "ada", "s3cret"
    authobject = getattr(session, "auth_" + method.lower().replace("-", "_"))
    ours = answers(method, "ada", "s3cret")
    for count, challenge in enumerate([None, b"<1.2@host>", b"Password:"]):
        session._auth_challenge_count = count + 1  # type: ignore[attr-defined]
        assert ours(challenge, count + 1) == authobject(challenge), (method, challenge)



async def test_replies_are_read_as_smtplib_reads_them_however_the_bytes_are_cut() -> None:
    replies = _Replies(asyncio.get_running_loop(), seconds=1)
    stream = (b"250-first line\r\n250-SIZE 100\r\n250 last\r\n"
              b"354 go ahead\r\n"
              b"garbage without a code\r\n"
              b"550 5.1.1 no  such user \r\n")
    for index in range(len(stream)):  # one byte at a time: every cut there is
        replies.data_received(stream[index:index + 1])
    replies.connection_lost(None)

    assert [await replies.next() for _ in range(4)] == [
        (250, b"first line\nSIZE 100\nlast"), (354, b"go ahead"),
        (-1, b"age without a code"), (550, b"5.1.1 no  such user")]
    with pytest.raises(smtplib.SMTPServerDisconnected, match="unexpectedly closed"):
        await replies.next()


async def test_a_reply_line_longer_than_smtplib_takes_is_an_error_500() -> None:
    replies = _Replies(asyncio.get_running_loop(), seconds=1)

    replies.data_received(b"250-" + b"x" * 9000)

    assert await replies.next() == (500, b"Line too long.")
