"""Chat through a Slack-compatible incoming webhook."""

from __future__ import annotations

from typing import Any

import httpx

from services.notification.channels.base import ChannelError
from services.notification.core.model import CHAT, Delivery, UserContact

MAX_ERROR_BODY_CHARS = 200


class WebhookChannel:
    """POSTs ``{"text": ..., "channel": handle}`` with ``Idempotency-Key: <delivery id>``.

    One HTTP client (and so one connection pool) is shared by all sends; pass your own
    ``client`` to control it, or call ``aclose()`` at shutdown to close the one made here.
    """

    name = CHAT

    def __init__(
        self, url: str, timeout: float = 10.0, *, client: httpx.AsyncClient | None = None
    ) -> None:
        self.url = url
        self.timeout = timeout
        self._client = client
        self._owns_client = client is None

    async def send(self, delivery: Delivery, contact: UserContact | None) -> None:
        try:
            response = await self._http().post(
                self.url,
                json=slack_message(delivery, contact),
                headers={"Idempotency-Key": delivery.id},
                timeout=self.timeout,
            )
        except httpx.UnsupportedProtocol as exc:
            raise ChannelError(f"bad webhook URL: {exc}", retryable=False) from exc
        except httpx.TransportError as exc:
            raise ChannelError(f"webhook unreachable: {exc!r}", retryable=True) from exc
        if not response.is_success:
            status = response.status_code
            raise ChannelError(
                f"webhook answered {status}: {response.text[:MAX_ERROR_BODY_CHARS]}",
                retryable=status >= 500 or status == 429,
            )

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        return self._client


def slack_message(delivery: Delivery, contact: UserContact | None) -> dict[str, Any]:
    text = f"*{_escape(delivery.subject)}*\n{_escape(delivery.body)}"
    message: dict[str, Any] = {"text": text}
    if contact is not None and contact.chat_handle:
        message["channel"] = contact.chat_handle
    return message


def _escape(text: str) -> str:
    """Slack's control characters; unescaped, a title could ping <!channel> or forge a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
