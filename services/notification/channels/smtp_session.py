"""An SMTP client session on the event loop: the commands the email channel uses, and no more.

smtplib in a worker thread cost the notification service about half of its CPU: every
command was a blocking round trip, each a thread wake-up and a hand-over of the GIL.  Here a
session is an asyncio protocol: a write, and the replies collected as they arrive.  When the
server advertises PIPELINING (RFC 2920) MAIL, RCPT and DATA go in one write and their
replies are read together, so a mail costs two round trips instead of four (decision 38).

Failures are raised as smtplib's exceptions with smtplib's arguments, so the channel
classifies them and words them as it did when smtplib sent the mail.
"""

from __future__ import annotations

import asyncio
import functools
import re
import ssl
from collections import deque
from smtplib import (
    SMTPConnectError,
    SMTPDataError,
    SMTPException,
    SMTPHeloError,
    SMTPNotSupportedError,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
    quoteaddr,
)
from typing import NamedTuple

from services.notification.channels.smtp_auth import login

MAX_LINE = 8192  # smtplib's limit on a reply line
_FEATURE = re.compile(r"(?P<feature>[A-Za-z0-9][A-Za-z0-9\-]*) ?")
_LEADING_DOT = re.compile(rb"(?m)^\.")


class Reply(NamedTuple):
    code: int  # -1 when the line had no number, as smtplib has it
    text: bytes  # the lines' texts joined by newlines, as smtplib has it


class _Replies(asyncio.Protocol):
    """Cuts what the server sends into replies and keeps them until they are asked for."""

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        self.loop = loop
        self.seconds = seconds  # the longest wait for a reply
        self.replies: deque[Reply] = deque()
        self.lost: SMTPServerDisconnected | None = None
        self._buffer = b""
        self._lines: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            self._line(buffer[start:end + 1])
            start = end + 1
        self._buffer = buffer[start:]
        if len(self._buffer) > MAX_LINE:
            self._too_long()
        self._wake()

    def _line(self, line: bytes) -> None:
        if len(line) > MAX_LINE:
            self._too_long()
            return
        self._lines.append(line[4:].strip(b" \t\r\n"))
        try:
            code = int(line[:3])
        except ValueError:
            code = -1
        if code == -1 or line[3:4] != b"-":
            self.replies.append(Reply(code, b"\n".join(self._lines)))
            self._lines = []

    def _too_long(self) -> None:
        """Not SMTP: an error 500 and the connection closed, as smtplib does."""
        self._buffer = b""
        self.replies.append(Reply(500, b"Line too long."))
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc is not None else ""
        self.lost = SMTPServerDisconnected(f"Connection unexpectedly closed{reason}")
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next(self) -> Reply:
        """The next reply; SMTPServerDisconnected when the connection ended before it."""
        while not self.replies:
            if self.lost is not None:
                raise self.lost
            waiter = self._waiter = self.loop.create_future()
            timer = self.loop.call_later(self.seconds, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        return self.replies.popleft()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("timed out"))


class SmtpSession:
    """One connection to the server, greeted, EHLO said (and STARTTLS, AUTH if asked)."""

    def __init__(self, transport: asyncio.Transport, replies: _Replies) -> None:
        self.transport = transport
        self.replies = replies
        self.features: dict[str, str] = {}
        self.body_sent = False  # once the message went out, a failure may follow its delivery

    @classmethod
    async def open(cls, host: str, port: int, *, seconds: float, local_name: str,
                   tls: ssl.SSLContext | None = None, username: str | None = None,
                   password: str = "") -> SmtpSession:
        """Connects and gets the session ready for mail; closes it again on any failure.

        ``seconds`` bounds the connect, each reply's wait and the TLS handshake.
        """
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(seconds):
            transport, replies = await loop.create_connection(
                lambda: _Replies(loop, seconds), host, port)
        session = cls(transport, replies)
        try:
            greeting = await session.reply()
            if greeting.code != 220:
                raise SMTPConnectError(greeting.code, greeting.text)
            await session.hello(local_name)
            if tls is not None:
                await session.starttls(tls, host, local_name)
            if username is not None:
                await login(session, username, password)
        except BaseException:
            session.close()
            raise
        return session

    @property
    def usable(self) -> bool:
        """Still connected with nothing unasked for from the server (e.g. a 421 at idle)."""
        return self.replies.lost is None and not self.replies.replies \
            and not self.transport.is_closing()

    async def send(self, sender: str, recipient: str, message: bytes,
                   options: str = "") -> None:
        """One mail transaction for one recipient, as smtplib's ``sendmail`` does it."""
        if "size" in self.features:
            options = f" SIZE={len(message)}{options}"
        commands = (f"MAIL FROM:{_quoted(sender)}{options}\r\n".encode(),
                    f"RCPT TO:{_quoted(recipient)}\r\n".encode(), b"DATA\r\n")
        mail, rcpt, data = await self._envelope(commands)
        if mail.code != 250:
            raise SMTPSenderRefused(mail.code, mail.text, sender)
        if rcpt.code not in (250, 251):
            raise SMTPRecipientsRefused({recipient: (rcpt.code, rcpt.text)})
        if data.code != 354:
            raise SMTPDataError(data.code, data.text)
        self.write(_terminated(message))
        self.body_sent = True
        reply = await self.reply()
        if reply.code != 250:
            raise SMTPDataError(reply.code, reply.text)
        self.body_sent = False

    async def _envelope(self, commands: tuple[bytes, ...]) -> list[Reply]:
        """The replies to MAIL, RCPT and DATA: written at once if the server pipelines, one
        by one otherwise; after a refusal, the rest stand as refused too."""
        pipelining = "pipelining" in self.features
        if pipelining:
            self.write(b"".join(commands))
        replies: list[Reply] = []
        for command in commands:
            if not pipelining:
                self.write(command)
            try:
                reply = await self.reply()
            except SMTPServerDisconnected:
                if not replies or replies[-1].code >= 400 or replies[-1].code < 0:
                    raise  # nothing refused yet: the loss is the error
                break
            replies.append(reply)
            if reply.code >= 400 or reply.code < 0:
                break
        return replies + [replies[-1]] * (len(commands) - len(replies))

    async def hello(self, local_name: str) -> None:
        self.write(f"EHLO {local_name}\r\n".encode())
        reply = await self.reply()
        if reply.code == 250:
            self.features = _features(reply.text)
            return
        self.features = {}
        self.write(f"HELO {local_name}\r\n".encode())
        reply = await self.reply()
        if not 200 <= reply.code < 300:
            raise SMTPHeloError(reply.code, reply.text)

    async def starttls(self, context: ssl.SSLContext, host: str, local_name: str) -> None:
        """Upgrades the connection and says EHLO again.  A refusal is an error (smtplib would
        have carried on in the clear and sent the login there)."""
        if "starttls" not in self.features:
            raise SMTPNotSupportedError("STARTTLS extension not supported by server.")
        self.write(b"STARTTLS\r\n")
        reply = await self.reply()
        if reply.code != 220:
            raise SMTPResponseException(reply.code, reply.text)
        loop = asyncio.get_running_loop()
        transport = await loop.start_tls(self.transport, self.replies, context,
                                         server_hostname=host,
                                         ssl_handshake_timeout=self.replies.seconds)
        if transport is None:  # pragma: no cover - only when the connection is gone
            raise SMTPServerDisconnected("Connection unexpectedly closed")
        self.transport = transport
        await self.hello(local_name)

    def write(self, data: bytes) -> None:
        if self.transport.is_closing():
            raise SMTPServerDisconnected("Server not connected")
        self.transport.write(data)

    async def reply(self) -> Reply:
        return await self.replies.next()

    async def quit(self) -> None:
        """QUIT, waiting for the goodbye (at shutdown), then close."""
        try:
            if not self.transport.is_closing():
                self.write(b"QUIT\r\n")
                await self.reply()
        except (OSError, SMTPException):
            pass
        finally:
            self.close()

    def close(self) -> None:
        """Says QUIT without waiting for the answer, and closes."""
        if not self.transport.is_closing():
            self.transport.write(b"QUIT\r\n")
            self.transport.close()


@functools.lru_cache(maxsize=4096)
def _quoted(address: str) -> str:
    """``<local@domain>`` for the envelope, as smtplib writes it; cached as the channel's
    addresses are (the same people over and over)."""
    return quoteaddr(address)


def _features(text: bytes) -> dict[str, str]:
    """The EHLO reply's extensions, lower-cased, with their parameters (as smtplib reads them)."""
    features: dict[str, str] = {}
    for line in text.decode("latin-1").split("\n")[1:]:
        if line.upper().startswith("AUTH="):  # the old style some servers still write
            features["auth"] = f"{features.get('auth', '')} {line[5:]}"
            continue
        if match := _FEATURE.match(line):
            feature = match.group("feature").lower()
            params = line[match.end("feature"):].strip()
            features[feature] = (f"{features.get(feature, '')} {params}" if feature == "auth"
                                 else params)
    return features


def _terminated(message: bytes) -> bytes:
    """The message as DATA carries it: leading dots doubled, ended by CRLF.CRLF (smtplib's)."""
    if message.startswith(b".") or b"\n." in message:
        message = _LEADING_DOT.sub(b"..", message)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message + b".\r\n"
