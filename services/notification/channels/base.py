"""What every delivery channel looks like, and how it says a send failed."""

from __future__ import annotations

from typing import Protocol

from services.notification.core.model import Delivery, UserContact


class ChannelError(Exception):
    """A send that did not go through; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable

    def __repr__(self) -> str:
        return f"ChannelError({self.message!r}, retryable={self.retryable})"


class Channel(Protocol):
    """Sends one delivery; ``name`` matches ``Delivery.channel`` ("email", "chat", "kafka").

    ``contact`` is None for the Kafka fan-out delivery (recipient "*"). A channel raises
    ChannelError on failure; delivery ids are stable, so receivers can drop a resend.
    """

    @property
    def name(self) -> str: ...

    async def send(self, delivery: Delivery, contact: UserContact | None) -> None: ...
