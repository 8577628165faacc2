"""WebhookChannel against a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from receivers import WebhookReceiver, free_port

from services.notification.channels.base import Channel, ChannelError
from services.notification.channels.chat import WebhookChannel, slack_message
from services.notification.core.model import Delivery, UserContact

T0 = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
BOB = UserContact("u-bob", chat_handle="@bob", channels=("chat",))
DELIVERY = Delivery(
    id="fedcba9876543210fedcba9876543210",
    source_event_id="evt-1",
    source_type="WorkItemAssigned",
    recipient="u-bob",
    channel="chat",
    template="work_item_assigned",
    subject="New work item: <!channel> & ${x}",
    body="Open it: /work/wi-1\n",
    next_attempt_at=T0,
    created_at=T0,
)


@pytest.fixture
async def chat(webhook: WebhookReceiver) -> AsyncIterator[WebhookChannel]:
    channel = WebhookChannel(webhook.url, timeout=5)
    yield channel
    await channel.aclose()


async def test_posts_slack_json_with_the_idempotency_key(
    webhook: WebhookReceiver, chat: WebhookChannel
) -> None:
    sender: Channel = chat

    await sender.send(DELIVERY, BOB)

    [(path, headers, body)] = webhook.requests
    assert path == "/hooks/baton"
    assert headers["Idempotency-Key"] == DELIVERY.id
    assert headers["Content-Type"] == "application/json"
    assert body == {
        "text": "*New work item: &lt;!channel&gt; &amp; ${x}*\nOpen it: /work/wi-1\n",
        "channel": "@bob",
    }


def test_without_a_handle_the_webhook_default_channel_is_used() -> None:
    assert "channel" not in slack_message(DELIVERY, None)
    assert "channel" not in slack_message(DELIVERY, UserContact("u", email="u@example.com"))


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (503, True), (429, True), (400, False), (404, False)]
)
async def test_a_non_2xx_answer_raises_classified_by_status(
    webhook: WebhookReceiver, chat: WebhookChannel, status: int, retryable: bool
) -> None:
    webhook.status = status

    with pytest.raises(ChannelError) as caught:
        await chat.send(DELIVERY, BOB)

    assert caught.value.retryable is retryable
    assert str(status) in caught.value.message


async def test_any_2xx_is_success(webhook: WebhookReceiver, chat: WebhookChannel) -> None:
    webhook.status = 204

    await chat.send(DELIVERY, BOB)

    assert len(webhook.requests) == 1


async def test_an_unreachable_webhook_is_retryable() -> None:
    channel = WebhookChannel(f"http://127.0.0.1:{free_port()}/hook", timeout=5)
    try:
        with pytest.raises(ChannelError) as caught:
            await channel.send(DELIVERY, BOB)
    finally:
        await channel.aclose()

    assert caught.value.retryable
