"""The notification process: python -m services.notification

Consumes workitems.events and runs.events (whose events only ever tell the operators: with
none configured it parses none of them); sends one delivery per (event, recipient,
channel) by email (SMTP) or chat (webhook) and stores it once, with its outcome: a batch's
sent and failed ones as one ``delivery_log`` page, a pending one (a retry is due) in
``deliveries`` (decisions 15 and 23); publishes one NotificationSent per notice that
reaches someone on the notifications topic, storing nothing for it (decision 15).

Delivery guarantees:
- A redelivered event never notifies a person twice: delivery ids derive from the event,
  and a batch sends only the deliveries not stored yet.  Its NotificationSent is published
  again, with the same event id (derived from the source event): consumers drop repeats.
- A failed send is stored pending with ``next_attempt_at``; the retry sweep claims it with
  a lease of ``lease_seconds`` at its attempt count (so two replicas never retry one
  delivery at once) and stores the outcome by a conditional update, one bulk write a batch.
- Crash safety: nothing is lost, a send may be repeated.  A crash between a send and the
  insert of its outcome stores nothing, so the uncommitted event is consumed again and the
  send repeated; a retry claimed but never recorded becomes due again when its lease
  expires.  That rare resend is recognisable downstream: the email's Message-ID and the
  webhook's Idempotency-Key equal the delivery id.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any

from fastapi import FastAPI
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from contracts.events.workitems import Contact
from contracts.topics import RUNS_EVENTS, WORKITEMS_EVENTS
from services.notification.api import deliveries_router
from services.notification.channels.base import Channel
from services.notification.channels.chat import WebhookChannel
from services.notification.channels.email import SmtpChannel
from services.notification.core.plan import contact_from
from services.notification.core.retry import RetryPolicy
from services.notification.core.templates import notable_types
from services.notification.dispatch import Dispatcher
from services.notification.fanout import FanOut, KafkaChannel
from services.notification.handler import NotificationHandler
from services.notification.jobs import RetrySweeper
from services.notification.metrics import NotificationMetrics
from services.notification.store import INDEXES, DeliveryStore
from shared.access import follow_access
from shared.runtime import Runtime
from shared.settings import ServiceSettings

DEFAULT_PORT = 8105


class NotificationSettings(ServiceSettings):
    service_name: str = "notification"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_sender: str = "baton@localhost"
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    chat_webhook_url: str | None = Field(default=None, description="None disables chat")
    chat_timeout_seconds: float = Field(default=10.0, gt=0)
    operators: Annotated[list[Contact], NoDecode] = Field(
        default_factory=list,
        description="who is told about run events: comma-separated `id=email` or `email`"
        ' entries, or a JSON list of contacts ([{"user", "email", "chat_handle", "channels"}])',
    )
    max_attempts: int = Field(default=5, ge=1)
    retry_base_delay_seconds: float = Field(default=30.0, ge=0)
    retry_max_delay_seconds: float = Field(default=3_600.0, ge=0)
    lease_seconds: float = Field(default=60.0, gt=0, description="how long a send may take")
    send_concurrency: int = Field(default=16, ge=1)
    # Off the runs' path: a notice may wait a fifth of a second for its fetch, and a burst's
    # events come in fetches of 64 KiB instead of one per handful of events (each a request
    # for the broker and a batch, a delivery page, for this service).
    consumer_fetch_min_bytes: int = Field(default=64 * 1024, ge=1)
    consumer_fetch_max_wait_ms: int = Field(default=200, ge=0)
    consumer_busy_fetch_max_wait_ms: int = Field(default=200, ge=0)  # busy or not (decision 41)

    @field_validator("operators", mode="before")
    @classmethod
    def _read_operators(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if value.strip().startswith("["):
            return json.loads(value)
        return [_operator(part.strip()) for part in value.split(",") if part.strip()]


def _operator(entry: str) -> dict[str, str]:
    """``id=email`` or an email address (its own id).  Notification reads no directory, so
    an operator named by id alone could not be reached: that is a start-up error."""
    user, named, email = entry.partition("=")
    user, email = (user.strip(), email.strip()) if named else (entry, entry)
    if "@" not in email or not user:
        raise ValueError(f"operator {entry!r} has no email address: write it as "
                         f"{user or 'name'}=someone@example.com, or give contacts as JSON")
    return {"user": user, "email": email}


def build(settings: NotificationSettings | None = None) -> Runtime:
    settings = settings or NotificationSettings()
    rt = Runtime(settings, title="Baton notification", default_port=DEFAULT_PORT)
    metrics = NotificationMetrics(rt.registry)
    channels = _channels(settings, rt)
    store = DeliveryStore(rt.db, timedelta(seconds=settings.lease_seconds))
    policy = RetryPolicy(
        max_attempts=settings.max_attempts,
        base_delay_seconds=settings.retry_base_delay_seconds,
        max_delay_seconds=max(settings.retry_max_delay_seconds, settings.retry_base_delay_seconds),
    )
    dispatcher = Dispatcher(store, channels, policy, metrics,
                            concurrency=settings.send_concurrency)
    operators = [contact_from(operator, set(channels)) for operator in settings.operators]
    handler = NotificationHandler(store, dispatcher, FanOut(rt.publisher), metrics,
                                  operators=operators, enabled=set(channels))
    rt.consume((WORKITEMS_EVENTS, RUNS_EVENTS), handler,
               types=notable_types(operators=bool(operators)))
    rt.when_due(RetrySweeper(store, dispatcher, metrics), store.retries, "retries")
    rt.add_indexes(INDEXES)
    authenticator = follow_access(rt)
    rt.http.include_router(deliveries_router(store, authenticator))
    for channel in channels.values():
        if isinstance(channel, WebhookChannel | SmtpChannel):
            _on_shutdown(rt.http, channel.aclose)  # idle connections and sessions
    return rt


def _channels(settings: NotificationSettings, rt: Runtime) -> dict[str, Channel]:
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    channels: list[Channel] = [
        SmtpChannel(settings.smtp_host, settings.smtp_port, settings.smtp_sender,
                    settings.smtp_timeout_seconds, starttls=settings.smtp_starttls,
                    username=settings.smtp_username, password=password),
        KafkaChannel(rt.publisher),  # fan-outs an earlier version stored, still pending
    ]
    if settings.chat_webhook_url:
        channels.append(WebhookChannel(settings.chat_webhook_url, settings.chat_timeout_seconds))
    return {channel.name: channel for channel in channels}


def _on_shutdown(app: FastAPI, close: Callable[[], Awaitable[None]]) -> None:
    """Runs ``close`` after the runtime's own lifespan (which has no stop hook of its own)."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        async with inner(app) as state:
            try:
                yield state
            finally:
                await close()

    app.router.lifespan_context = lifespan


if __name__ == "__main__":
    build().serve()
