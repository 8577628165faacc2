"""SMTP AUTH for the email channel's sessions: smtplib's methods, in its order, with its
answers, so a server that took smtplib's login takes this one (decision 38)."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable
from smtplib import SMTPAuthenticationError, SMTPException, SMTPNotSupportedError
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.notification.channels.smtp_session import SmtpSession

Answer = Callable[[bytes | None, int], str | None]  # a challenge (None: the first), its count
MAX_CHALLENGES = 5  # smtplib's bound on a method's challenges


async def login(session: SmtpSession, username: str, password: str) -> None:
    """AUTH with the first of CRAM-MD5, PLAIN, LOGIN the server offers that takes the login;
    raises the last refusal when none does."""
    if "auth" not in session.features:
        raise SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
    offered = session.features["auth"].upper().split()
    methods = [m for m in ("CRAM-MD5", "PLAIN", "LOGIN") if m in offered]
    if not methods:
        raise SMTPException("No suitable authentication method found.")
    refused: SMTPAuthenticationError | None = None
    for method in methods:
        try:
            await _auth(session, method, answers(method, username, password))
            return
        except SMTPAuthenticationError as exc:
            refused = exc
    assert refused is not None
    raise refused


async def _auth(session: SmtpSession, method: str, answer: Answer) -> None:
    first = answer(None, 0)
    if first is None:
        session.write(f"AUTH {method}\r\n".encode())
    else:
        session.write(f"AUTH {method} {_b64(first)}\r\n".encode())
    challenges = 0 if first is None else 1
    reply = await session.reply()
    while reply.code == 334:
        challenges += 1
        if challenges > MAX_CHALLENGES:
            raise SMTPException(f"Server AUTH mechanism infinite loop. Last response: {reply}")
        said = answer(base64.decodebytes(reply.text), challenges) or ""
        session.write(f"{_b64(said)}\r\n".encode())
        reply = await session.reply()
    if reply.code not in (235, 503):
        raise SMTPAuthenticationError(reply.code, reply.text)


def answers(method: str, username: str, password: str) -> Answer:
    """What to say to each challenge (None: the first) of an AUTH method, as smtplib does."""
    def cram_md5(challenge: bytes | None, _: int) -> str | None:
        if challenge is None:
            return None
        return f"{username} {hmac.HMAC(password.encode('ascii'), challenge, 'md5').hexdigest()}"

    def plain(_challenge: bytes | None, _: int) -> str:
        return f"\0{username}\0{password}"

    def login(challenge: bytes | None, count: int) -> str:
        return username if challenge is None or count < 2 else password

    return {"CRAM-MD5": cram_md5, "PLAIN": plain, "LOGIN": login}[method]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("ascii")).decode("ascii")
