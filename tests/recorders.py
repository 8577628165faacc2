"""A publisher for store and handler tests on the real servers: it keeps what it is given,
as a consumer would parse it, or fails like a process dying before it published.

Imported by name (tests/ is on the path) by the integration tests.
"""

from __future__ import annotations

from collections.abc import Iterable

from contracts import Envelope, parse
from shared.outgoing import Outgoing


class Recorder:
    """Keeps what it is given (or fails, like a process dying first: ``broken``)."""

    def __init__(self, *, broken: bool = False) -> None:
        self.sent: list[Envelope] = []
        self.broken = broken

    async def publish(self, envelopes: Iterable[Envelope]) -> None:
        if self.broken:
            raise ConnectionError("the process died before publishing")
        self.sent.extend(envelopes)

    async def send(self, messages: Iterable[Outgoing]) -> None:
        """Messages as stored (decision 35): what a consumer parses of their bytes."""
        await self.publish([parse(m.value) for m in messages])

    def types_for(self, run_id: str) -> list[str]:
        return [e.type for e in self.sent if e.run_id == run_id]
