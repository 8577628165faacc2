"""Fixtures for notification tests: events at a fixed time, and real local receivers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from receivers import MailSink, WebhookReceiver, smtp_sink, webhook_receiver

from contracts.envelope import Envelope, Payload, new_event

NOW = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)


def event(payload: Payload, *, event_id: str = "evt-1", run_id: str = "run-1") -> Envelope:
    return new_event(payload, producer="test", run_id=run_id, event_id=event_id, occurred_at=NOW)


@pytest.fixture
def make_event() -> Callable[..., Envelope]:
    return event


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def smtp_server() -> Iterator[tuple[MailSink, int]]:
    with smtp_sink() as server:
        yield server


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as receiver:
        yield receiver
