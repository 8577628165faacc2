"""Email over SMTP with the standard library, in a worker thread so the event loop keeps going."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate

from services.notification.channels.base import ChannelError
from services.notification.core.model import EMAIL, Delivery, UserContact


class SmtpChannel:
    """Sends a delivery as a plain-text email; one SMTP session per message.

    The Message-ID derives from the delivery id, so a resend after a lost acknowledgement
    carries the same id and mail systems that dedupe on it show the message once.
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
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.timeout = timeout
        self.starttls = starttls
        self.username = username
        self.password = password

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

    def compose(self, delivery: Delivery, to: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = delivery.subject
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = f"<{delivery.id}@{_domain_of(self.sender)}>"
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
        message["X-Baton-Delivery-Id"] = delivery.id
        message["X-Baton-Event-Id"] = delivery.source_event_id
        message.set_content(delivery.body)
        return message

    def _transmit(self, message: EmailMessage, to: str) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username is not None:
                smtp.login(self.username, self.password or "")
            smtp.send_message(message, from_addr=self.sender, to_addrs=[to])


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
