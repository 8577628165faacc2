"""Email over SMTP with the standard library, in a worker thread so the event loop keeps going."""

from __future__ import annotations

import asyncio
import functools
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from email.base64mime import body_encode
from email.header import Header
from email.message import Message
from email.policy import Compat32
from email.utils import formatdate, parseaddr

from services.notification.channels.base import ChannelError
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
        limit = self.max_line_length or 0
        if (isinstance(value, str) and len(name) + 2 + len(value) <= limit
                and _PLAIN_LINE.fullmatch(value)):
            return f"{name}: {value}{self.linesep}"
        return None


wire_policy = _WirePolicy()


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
    cost more CPU than a message (about 0.8 against 0.4 ms on the bench's local server).
    Concurrent sends each hold their own session, so there are at most as many as sends at
    once; one left idle longer than ``idle_seconds`` is closed instead of reused, and a
    reused one the server closed meanwhile is replaced once (nothing was accepted on it).
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
        self._sender_domain = _domain_of(sender)
        self._idle: list[tuple[float, smtplib.SMTP]] = []  # (since, session), newest last
        self._lock = threading.Lock()  # sends run in worker threads

    async def send(self, delivery: Delivery, contact: UserContact | None) -> None:
        if contact is None or not contact.email:
            raise ChannelError(f"{delivery.recipient} has no email address", retryable=False)
        try:
            message = self.compose(delivery, contact.email)
        except ValueError as exc:  # a header the email package refuses, e.g. a bad address
            raise ChannelError(f"cannot compose the email: {exc}", retryable=False) from exc
        try:
            await asyncio.to_thread(self._transmit, message, contact.email)
        except (OSError, smtplib.SMTPException) as exc:
            raise _classify(exc) from exc

    def compose(self, delivery: Delivery, to: str) -> Message:
        """The mail, built with the email package's plain (compat32) classes: its modern
        header classes parse every value set (most of a mail's CPU); the values here are
        checked instead, one address and one line each.

        It is the message ``MIMEText(body, "plain", "utf-8")`` makes, with its three MIME
        headers written directly: MIMEText parses and rewrites its Content-Type on the way
        (a third of composing).  Its policy folds plain headers cheaply (:class:`_WirePolicy`).
        """
        message = Message(policy=wire_policy)
        message["Content-Type"] = 'text/plain; charset="utf-8"'
        message["MIME-Version"] = "1.0"
        message["Content-Transfer-Encoding"] = "base64"
        message.set_payload(body_encode(delivery.body.encode("utf-8")))
        message["From"] = self.sender
        message["To"] = _address(to)
        message["Subject"] = _header(delivery.subject)
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = f"<{_header(delivery.id)}@{self._sender_domain}>"
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
        message["X-Baton-Delivery-Id"] = _header(delivery.id)
        message["X-Baton-Event-Id"] = _header(delivery.source_event_id)
        return message

    async def aclose(self) -> None:
        """Say QUIT on the idle sessions (at shutdown)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for _, session in idle:
            await asyncio.to_thread(_quit, session)

    def _transmit(self, message: Message, to: str) -> None:
        session, reused = self._take()
        try:
            try:
                session.send_message(message, from_addr=self.sender, to_addrs=[to])
            except smtplib.SMTPServerDisconnected:
                if not reused:
                    raise
                _quit(session)  # the server closed it while it was idle: one fresh try
                session = self._open()
                session.send_message(message, from_addr=self.sender, to_addrs=[to])
        except BaseException:
            _quit(session)  # after an error its state is not worth knowing
            raise
        self._give_back(session)

    def _take(self) -> tuple[smtplib.SMTP, bool]:
        """The newest idle session still fresh enough, else a new one; and whether reused."""
        now = self.clock()
        with self._lock:
            stale = [s for since, s in self._idle if now - since > self.idle_seconds]
            self._idle = [(since, s) for since, s in self._idle
                          if now - since <= self.idle_seconds]
            taken = self._idle.pop()[1] if self._idle else None
        for session in stale:
            _quit(session)
        return (taken, True) if taken is not None else (self._open(), False)

    def _give_back(self, session: smtplib.SMTP) -> None:
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append((self.clock(), session))
                return
        _quit(session)

    def _open(self) -> smtplib.SMTP:
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username is not None:
                smtp.login(self.username, self.password or "")
        except BaseException:
            _quit(smtp)
            raise
        return smtp


def _quit(session: smtplib.SMTP) -> None:
    try:
        session.quit()
    except (OSError, smtplib.SMTPException):
        session.close()


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
