"""The mail SmtpChannel puts on the wire, byte for byte.

``mail`` writes a mail whose headers need no folding directly, and has any other
composed through the email package (``compose``: its own header folding for short
one-line values, the MIME headers written directly) and flattened (``wire_bytes``) for its
own SMTP client; these tests pin that the bytes it hands to DATA are exactly
those smtplib's ``send_message`` made of the email package's plain construction, a MIMEText
with compat32 headers.
"""

from __future__ import annotations

import dataclasses
import smtplib
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.message import Message
from email.mime.text import MIMEText
from email.policy import Policy, compat32

from hypothesis import given, settings
from hypothesis import strategies as st

from services.notification.channels.email import SmtpChannel, _header, wire_bytes, wire_policy
from services.notification.core.model import Delivery

T0 = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
DATE = "Fri, 14 Mar 2025 09:30:00 GMT"
SENDER = "Baton <baton@notify.example.com>"
DELIVERY = Delivery(
    id="0123456789abcdef0123456789abcdef",
    source_event_id="evt-1",
    source_type="WorkItemAssigned",
    recipient="u-ada",
    channel="email",
    template="work_item_assigned",
    subject="New work item: Review",
    body='"Review" in bench is now assigned to alice.\n\nOrchestration: bench\nStep: s\n'
         "Due: no due date\nOpen it: /work/wi-1\n",
    next_attempt_at=T0,
    created_at=T0,
)


class CapturingSession(smtplib.SMTP):
    """smtplib's own send_message, up to the bytes it hands to sendmail (no connection)."""

    def __init__(self) -> None:
        super().__init__()
        self.ehlo_resp = b"250 test"  # as if EHLO was said: no SMTPUTF8
        self.sent: list[bytes] = []

    def sendmail(self, from_addr: str, to_addrs: object, msg: object,  # type: ignore[override]
                 mail_options: object = (), rcpt_options: object = ()) -> dict[str, object]:
        assert isinstance(msg, bytes)
        self.sent.append(msg)
        return {}


def on_the_wire(message: Message, to: str = "ada@example.com") -> bytes:
    message.replace_header("Date", DATE)
    session = CapturingSession()
    session.send_message(message, from_addr=SENDER, to_addrs=[to])
    return session.sent[0]


def composed(delivery: Delivery, to: str = "ada@example.com") -> bytes:
    """What the channel hands to DATA (before dot-stuffing), written directly or through
    the email package; both ways give the same bytes."""
    channel = SmtpChannel("127.0.0.1", 25, SENDER)
    wire = channel.mail(delivery, to, date=DATE)
    message = channel.compose(delivery, to)
    message.replace_header("Date", DATE)
    assert wire == wire_bytes(message)
    return wire


def reference(delivery: Delivery, to: str = "ada@example.com") -> bytes:
    """The same mail built the plain way: MIMEText, compat32, every header folded by it."""
    message = MIMEText(delivery.body, "plain", "utf-8", policy=compat32)
    message["From"] = SENDER
    message["To"] = to
    message["Subject"] = _header(delivery.subject)
    message["Date"] = DATE
    message["Message-ID"] = f"<{_header(delivery.id)}@notify.example.com>"
    message["Auto-Submitted"] = "auto-generated"
    message["X-Baton-Delivery-Id"] = _header(delivery.id)
    message["X-Baton-Event-Id"] = _header(delivery.source_event_id)
    return on_the_wire(message, to)


def test_a_mail_on_the_wire() -> None:
    assert composed(DELIVERY) == (
        b'Content-Type: text/plain; charset="utf-8"\r\n'
        b"MIME-Version: 1.0\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"From: Baton <baton@notify.example.com>\r\n"
        b"To: ada@example.com\r\n"
        b"Subject: New work item: Review\r\n"
        b"Date: Fri, 14 Mar 2025 09:30:00 GMT\r\n"
        b"Message-ID: <0123456789abcdef0123456789abcdef@notify.example.com>\r\n"
        b"Auto-Submitted: auto-generated\r\n"
        b"X-Baton-Delivery-Id: 0123456789abcdef0123456789abcdef\r\n"
        b"X-Baton-Event-Id: evt-1\r\n"
        b"\r\n"
        b"IlJldmlldyIgaW4gYmVuY2ggaXMgbm93IGFzc2lnbmVkIHRvIGFsaWNlLgoKT3JjaGVzdHJhdGlv\r\n"
        b"bjogYmVuY2gKU3RlcDogcwpEdWU6IG5vIGR1ZSBkYXRlCk9wZW4gaXQ6IC93b3JrL3dpLTEK\r\n"
    )


def test_long_and_non_ascii_headers_are_folded_and_encoded_as_before() -> None:
    unusual = dataclasses.replace(
        DELIVERY, subject="Grüße: " + "a rather long title " * 8, body="Grüße\n" * 40,
        source_event_id="evt " * 30)

    wire = composed(unusual)

    assert wire == reference(unusual)
    assert b"\r\n =?utf-8?q?Gr=C3=BC=C3=9Fe=3A_a_rather" in wire  # encoded, folded
    assert b"X-Baton-Event-Id: evt evt" in wire and b"\r\n evt" in wire  # folded


def written_both_ways(subject: str, body: str, event_id: str) -> tuple[bytes, bytes]:
    """The mail's bytes as Baton writes them and as the plain construction does, or
    ``b"refused"`` for either that refuses it (a lone surrogate cannot be encoded)."""
    delivery = dataclasses.replace(DELIVERY, subject=subject, body=body,
                                   source_event_id=event_id)
    written = []
    for write in (composed, reference):
        try:
            written.append(write(delivery))
        except ValueError:
            written.append(b"refused")
    return written[0], written[1]


@settings(max_examples=300, deadline=None)
@given(subject=st.text(max_size=120), body=st.text(), event_id=st.text(max_size=90))
def test_any_mail_is_the_same_bytes_as_the_plain_construction(
    subject: str, body: str, event_id: str
) -> None:
    wire, expected = written_both_ways(subject, body, event_id)
    assert wire == expected


# Header values near the fast path's edges: ASCII words, spaces and tabs, about a line long.
NEAR_PLAIN = st.from_regex(r"[ \t]?[!-~]{0,14}(?:[ \t]{1,2}[!-~]{0,14}){0,7}[ \t]?",
                           fullmatch=True)


@settings(max_examples=500)
@given(name=st.sampled_from(["Subject", "X-Baton-Event-Id", "To"]),
       value=st.one_of(NEAR_PLAIN, st.text(st.characters(max_codepoint=127), max_size=100),
                       st.text(max_size=100)))
def test_the_wire_policy_folds_every_header_as_compat32_does(name: str, value: str) -> None:
    def folded(policy: Policy) -> bytes | str:
        try:
            return policy.clone(linesep="\r\n").fold_binary(name, value)
        except HeaderParseError as exc:  # a value that reads as two headers is refused
            return repr(exc)

    assert folded(wire_policy) == folded(compat32)


@settings(max_examples=300, deadline=None)
@given(subject=st.from_regex(r"[!-~]{1,12}(?: [!-~]{1,12}){0,5}", fullmatch=True),
       body=st.text(), event_id=st.from_regex(r"[0-9a-f-]{1,40}", fullmatch=True))
def test_a_mail_of_plain_headers_and_any_body_is_the_same_bytes_written_directly(
    subject: str, body: str, event_id: str
) -> None:
    wire, expected = written_both_ways(subject, body, event_id)
    assert wire == expected
