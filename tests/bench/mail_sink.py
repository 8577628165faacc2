"""The bench's mail server: an SMTP sink in a process of its own that counts and discards.

The notification service mails every assignment, so the bench needs a server to take the
mail.  aiosmtpd in the harness' process cost about as much CPU as the people and the
observer together, on the harness' event loop and under its GIL.  This sink speaks just the
SMTP that the notification service's client (``services/notification/channels/``, no
STARTTLS, no login on the bench) needs: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT.  It
advertises PIPELINING, so the client writes MAIL, RCPT and DATA at once and the sink
answers the three in one write (decision 38); a client that waits for each reply is served
the same.  It runs in a spawned process on uvloop, so its CPU can be read from /proc apart.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from typing import Any, cast

EHLO_REPLY = (b"250-bench\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
              b"250 SIZE 33554432\r\n")
END_OF_DATA = b"\r\n.\r\n"
MAX_LINE = 4096  # a command line longer than this is not SMTP: the session is closed


class SmtpSession(asyncio.Protocol):
    """One client's session: replies to each command line; a message ends at CRLF.CRLF."""

    def __init__(self, accepted: Any) -> None:
        self.accepted = accepted  # a shared counter: .value, the messages accepted
        self.buffer = b""
        self.in_data = False
        self.quitting = False
        self.sender = False
        self.recipients = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(b"220 bench ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self.quitting:
            return
        # Where CRLF.CRLF may begin that the last search could not see whole.
        searched = max(len(self.buffer) - len(END_OF_DATA) + 1, 0)
        self.buffer += data
        replies = []
        while not self.quitting:
            if self.in_data:
                end = self.buffer.find(END_OF_DATA, searched)
                if end < 0:
                    break
                self.buffer = self.buffer[end + len(END_OF_DATA):]
                self.in_data = self.sender = False
                self.recipients = 0
                self.accepted.value += 1
                replies.append(b"250 OK: message accepted\r\n")
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                if len(self.buffer) > MAX_LINE:
                    replies.append(b"500 line too long\r\n")
                    self.quitting = True
                break
            line, self.buffer = self.buffer[:end], self.buffer[end + 2:]
            replies.append(self.reply_to(line))
            if self.in_data:
                # The message starts after DATA's line; a CRLF before it lets an empty
                # message's lone "." line end it like any other.
                self.buffer = b"\r\n" + self.buffer
                searched = 0
        if replies:
            self.transport.write(b"".join(replies))
        if self.quitting:
            self.transport.close()

    def reply_to(self, line: bytes) -> bytes:
        verb = line[:4].upper()
        if verb == b"EHLO":
            return EHLO_REPLY
        if verb == b"HELO":
            return b"250 bench\r\n"
        if verb == b"MAIL":
            self.sender, self.recipients = True, 0
            return b"250 OK\r\n"
        if verb == b"RCPT":
            if not self.sender:
                return b"503 MAIL first\r\n"
            self.recipients += 1
            return b"250 OK\r\n"
        if verb == b"DATA":
            if not self.recipients:
                return b"503 RCPT first\r\n"
            self.in_data = True
            return b"354 End data with <CR><LF>.<CR><LF>\r\n"
        if verb == b"RSET":
            self.sender, self.recipients = False, 0
            return b"250 OK\r\n"
        if verb == b"NOOP":
            return b"250 OK\r\n"
        if verb == b"QUIT":
            self.quitting = True
            return b"221 Bye\r\n"
        return b"502 not implemented\r\n"

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def serve(accepted: Any, port: Any, ready: Any) -> None:
    """The sink process: listen on a free port on 127.0.0.1, say which, serve until killed."""
    try:
        import uvloop  # the services' loop: less CPU per message than asyncio's own
        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency of the services
        pass

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SmtpSession(accepted), "127.0.0.1", 0)
        port.value = server.sockets[0].getsockname()[1]
        ready.set()
        await server.serve_forever()

    asyncio.run(main())


class MailSinkProcess:
    """Starts and stops the sink process; tells its port, its pid (for its CPU from /proc)
    and the messages it accepted."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of the harness' threads
        # Shared memory, no lock: the sink alone writes each.
        self._accepted: Any = context.Value("q", 0, lock=False)
        self._port: Any = context.Value("i", 0, lock=False)
        self._ready = context.Event()
        self._process = context.Process(target=serve, name="bench-mail-sink", daemon=True,
                                        args=(self._accepted, self._port, self._ready))

    def start(self, timeout: float = 30.0) -> MailSinkProcess:
        self._process.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.1):
            if not self._process.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the mail sink did not start listening "
                                   f"(exit code {self._process.exitcode})")
        return self

    @property
    def port(self) -> int:
        return int(self._port.value)

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    @property
    def messages(self) -> int:
        """Messages accepted so far (each ended by CRLF.CRLF and answered 250)."""
        return int(self._accepted.value)

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
        self._process.join(timeout=10)
