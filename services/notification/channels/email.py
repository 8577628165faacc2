"""Email over SMTP: the mail written as the email package writes it, sent on the event loop."""

from __future__ import annotations

import asyncio
import functools
import io
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from email.base64mime import body_encode
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message
from email.policy import Compat32
from email.utils import formatdate, parseaddr

from services.notification.channels.base import ChannelError
from services.notification.channels.smtp_session import SmtpSession
from services.notification.core.model import EMAIL, Delivery, UserContact

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PLAIN_LINE = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")  # words, one space apart


class _WirePolicy(Compat32):
    """compat32, with the header folding of a value that needs none done directly.

    compat32 folds each header through ``email.header.Header`` when the mail is flattened
    (in smtplib's ``send_message``): about half of a mail's CPU.  A value of printable
    ASCII words one space apart that fits on its line comes out of it unchanged, so such a
    value is written as it is; any other (long, non-ASCII, odd spacing) is folded by
    compat32 as before.  tests/unit/notification/test_notification_email_bytes.py pins that
    the bytes are the same.
    """

    def fold(self, name: str, value: str) -> str:
        return self._plain(name, value) or super().fold(name, value)

    def fold_binary(self, name: str, value: str) -> bytes:
        plain = self._plain(name, value)
        return plain.encode("ascii") if plain else super().fold_binary(name, value)

    def _plain(self, name: str, value: object) -> str | None:
        if isinstance(value, str) and _unfolded(name, value, self.max_line_length or 0):
            return f"{name}: {value}{self.linesep}"
        return None


wire_policy = _WirePolicy()
LINE_LIMIT = wire_policy.max_line_length or 0


def _unfolded(name: str, value: str, limit: int = LINE_LIMIT) -> bool:
    """Whether the header comes out of compat32's folding as it is: words of printable
    ASCII one space apart, on one line."""
    return len(name) + 2 + len(value) <= limit and _PLAIN_LINE.fullmatch(value) is not None


@functools.lru_cache(maxsize=4096)
def _address(text: str) -> str:
    """One plain address (``local@domain``), or ValueError: nothing else reaches a header.

    Cached: a deployment mails the same people over and over, and ``parseaddr`` cost a
    tenth of composing a mail.
    """
    address = text.strip()
    _, parsed = parseaddr(address)
    local, at, domain = address.rpartition("@")
    if (parsed != address or not at or not local or not domain
            or _CONTROL.search(address) or " " in address):
        raise ValueError(f"{text[:100]!r} is not an email address")
    return address


def _header(value: str) -> str:
    """A header value on one line: control characters out, non-ASCII as RFC 2047 words."""
    line = " ".join(_CONTROL.sub(" ", value).split())
    return line if line.isascii() else Header(line, "utf-8").encode()


class SmtpChannel:
    """Sends a delivery as a plain-text email over SMTP sessions it keeps open.

    The Message-ID derives from the delivery id, so a resend after a lost acknowledgement
    carries the same id and mail systems that dedupe on it show the message once.

    A session carries many messages: connecting, the greeting, EHLO, STARTTLS and a login
    cost more than a message.  Concurrent sends each hold their own session, so there are at
    most as many as sends at once (the dispatcher bounds those); one left idle longer than
    ``idle_seconds`` is closed instead of reused, and a reused one the server closed
    meanwhile is replaced once, when the server had not been given the message yet.
    Sessions run on the event loop (:mod:`.smtp_session`, decision 38).
    """

    name = EMAIL

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        timeout: float = 10.0,
        *,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        idle_seconds: float = 30.0,
        max_idle: int = 16,
        clock: Callable[[], float] = time.monotonic,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.timeout = timeout
        self.starttls = starttls
        self.username = username
        self.password = password
        self.idle_seconds = idle_seconds
        self.max_idle = max_idle
        self.clock = clock
        self._tls_context = tls_context
        self._sender_domain = _domain_of(sender)
        self._local_name: str | None = None  # smtplib's EHLO name, looked up once
        self._idle: list[tuple[float, SmtpSession]] = []  # (since, session), newest last

    async def send(self, delivery: Delivery, contact: UserContact | None) -> None:
        if contact is None or not contact.email:
            raise ChannelError(f"{delivery.recipient} has no email address", retryable=False)
        try:
            message = self.mail(delivery, contact.email)
        except ValueError as exc:  # a header the email package refuses, e.g. a bad address
            raise ChannelError(f"cannot compose the email: {exc}", retryable=False) from exc
        try:
            await self._transmit(message, contact.email)
        except (OSError, smtplib.SMTPException) as exc:
            raise _classify(exc) from exc

    def mail(self, delivery: Delivery, to: str, date: str | None = None) -> bytes:
        """The mail as DATA carries it (before dot-stuffing): ``wire_bytes(compose(...))``.

        When every header is a plain line (:class:`_WirePolicy`: printable ASCII words one
        space apart that fit on it, as nearly every mail's are) the bytes are written here
        directly, as the email package's generator writes them (each header as it is, an
        empty line, the body's base64 lines), which cost a third of sending a mail;
        otherwise the email package builds and folds it.  ``date``: the Date header's
        value (now).  tests/unit/notification/test_notification_email_bytes.py pins that
        the bytes are the same.
        """
        headers = self._headers(delivery, to, date or formatdate(usegmt=True))
        lines = []
        for name, value in headers:
            if not _unfolded(name, value):
                return wire_bytes(self._message(delivery, headers))
            lines.append(f"{name}: {value}\r\n")
        lines.append("\r\n")
        lines.append(body_encode(delivery.body.encode("utf-8")).replace("\n", "\r\n"))
        return "".join(lines).encode("ascii")

    def compose(self, delivery: Delivery, to: str) -> Message:
        """The mail, built with the email package's plain (compat32) classes: its modern
        header classes parse every value set (most of a mail's CPU); the values here are
        checked instead, one address and one line each.

        It is the message ``MIMEText(body, "plain", "utf-8")`` makes, with its three MIME
        headers written directly: MIMEText parses and rewrites its Content-Type on the way
        (a third of composing).  Its policy folds plain headers cheaply (:class:`_WirePolicy`).
        """
        return self._message(delivery, self._headers(delivery, to, formatdate(usegmt=True)))

    def _headers(self, delivery: Delivery, to: str, date: str) -> list[tuple[str, str]]:
        """The mail's headers in order, each value checked (one address, one line)."""
        delivery_id = _header(delivery.id)
        return [
            ("Content-Type", 'text/plain; charset="utf-8"'),
            ("MIME-Version", "1.0"),
            ("Content-Transfer-Encoding", "base64"),
            ("From", self.sender),
            ("To", _address(to)),
            ("Subject", _header(delivery.subject)),
            ("Date", date),
            ("Message-ID", f"<{delivery_id}@{self._sender_domain}>"),
            ("Auto-Submitted", "auto-generated"),  # RFC 3834: no vacation replies
            ("X-Baton-Delivery-Id", delivery_id),
            ("X-Baton-Event-Id", _header(delivery.source_event_id)),
        ]

    @staticmethod
    def _message(delivery: Delivery, headers: list[tuple[str, str]]) -> Message:
        message = Message(policy=wire_policy)
        for name, value in headers[:3]:  # the MIME headers, before the payload is set
            message[name] = value
        message.set_payload(body_encode(delivery.body.encode("utf-8")))
        for name, value in headers[3:]:
            message[name] = value
        return message

    async def aclose(self) -> None:
        """Say QUIT on the idle sessions (at shutdown)."""
        idle, self._idle = self._idle, []
        for _, session in idle:
            await session.quit()

    async def _transmit(self, message: bytes, to: str) -> None:
        session, reused = await self._take()
        try:
            try:
                await self._send_on(session, message, to)
            except smtplib.SMTPServerDisconnected:
                if not reused or session.body_sent:
                    raise
                session.close()  # the server closed it while it was idle: one fresh try
                session = await self._open()
                await self._send_on(session, message, to)
        except BaseException:
            session.close()  # after an error its state is not worth knowing
            raise
        self._give_back(session)

    async def _send_on(self, session: SmtpSession, message: bytes, to: str) -> None:
        options = ""
        if not (self.sender + to).isascii():  # as smtplib's send_message
            if "smtputf8" not in session.features:
                raise smtplib.SMTPNotSupportedError(
                    "One or more source or delivery addresses require internationalized email"
                    " support, but the server does not advertise the required SMTPUTF8"
                    " capability")
            options = " SMTPUTF8 BODY=8BITMIME"
        await session.send(self.sender, to, message, options)

    async def _take(self) -> tuple[SmtpSession, bool]:
        """The newest idle session still fresh and connected, else a new one; and whether
        reused.  On the event loop, nothing else touches the list meanwhile."""
        now = self.clock()
        fresh = []
        for since, session in self._idle:
            if now - since <= self.idle_seconds and session.usable:
                fresh.append((since, session))
            else:
                session.close()
        self._idle = fresh
        if fresh:
            return fresh.pop()[1], True
        return await self._open(), False

    def _give_back(self, session: SmtpSession) -> None:
        if len(self._idle) < self.max_idle:
            self._idle.append((self.clock(), session))
        else:
            session.close()

    async def _open(self) -> SmtpSession:
        if self._local_name is None:
            self._local_name = await asyncio.to_thread(socket.getfqdn)  # may ask the DNS
        tls = None
        if self.starttls:
            tls = self._tls_context = self._tls_context or ssl.create_default_context()
        return await SmtpSession.open(
            self.host, self.port, seconds=self.timeout, local_name=self._local_name, tls=tls,
            username=self.username, password=self.password or "")


def wire_bytes(message: Message) -> bytes:
    """The message as smtplib's ``send_message`` flattens it for DATA (before dot-stuffing)."""
    with io.BytesIO() as buffer:
        BytesGenerator(buffer).flatten(message, linesep="\r\n")
        return buffer.getvalue()


def _domain_of(address: str) -> str:
    domain = address.rpartition("@")[2].strip(" <>")
    return domain or "baton.invalid"


def _classify(exc: BaseException) -> ChannelError:
    """SMTP 4xx and network trouble are worth a retry; 5xx and configuration errors are not."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return ChannelError(f"recipient refused: {exc.recipients}", any(c < 500 for c in codes))
    if isinstance(exc, smtplib.SMTPResponseException):
        error = exc.smtp_error
        reply = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
        return ChannelError(f"SMTP {exc.smtp_code}: {reply}", retryable=exc.smtp_code < 500)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return ChannelError(f"SMTP server lacks a needed extension: {exc}", retryable=False)
    return ChannelError(f"SMTP server unreachable: {exc!r}", retryable=True)
