"""Delivery state transitions: sent, retried with back-off, or failed for good.

Every status change goes through ``TRANSITIONS``; a move it does not list (say, a late
success report for a delivery already failed) is a ``Rejection`` value, not an exception.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from services.notification.core.model import Delivery, DeliveryStatus

Outcome = Literal["sent", "retry", "give_up"]

TRANSITIONS: Mapping[tuple[DeliveryStatus, Outcome], DeliveryStatus] = {
    ("pending", "sent"): "sent",
    ("pending", "retry"): "pending",
    ("pending", "give_up"): "failed",
}

MAX_ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential back-off: ``base * multiplier**(n-1)`` after the n-th failure, capped.

    ``jitter`` spreads each delay by up to that fraction either way, so deliveries that
    failed together (an SMTP outage) do not all come back at the same instant.
    """

    max_attempts: int = 5
    base_delay_seconds: float = 30.0
    multiplier: float = 2.0
    max_delay_seconds: float = 3_600.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay_seconds < 0 or self.max_delay_seconds < self.base_delay_seconds:
            raise ValueError("need 0 <= base_delay_seconds <= max_delay_seconds")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")


def backoff_seconds(failures: int, policy: RetryPolicy, unit_random: float) -> float:
    """The delay after the ``failures``-th failure; ``unit_random`` is in [0, 1)."""
    delay = policy.base_delay_seconds
    for _ in range(failures - 1):  # multiplying up to the cap never overflows a float
        if delay >= policy.max_delay_seconds:
            break
        delay *= policy.multiplier
    spread = 1 + policy.jitter * (2 * unit_random - 1)
    return max(0.0, min(policy.max_delay_seconds, delay * spread))


def on_success(delivery: Delivery, now: datetime) -> Delivery | Rejection:
    target = _target(delivery, "sent")
    if isinstance(target, Rejection):
        return target
    return replace(
        delivery,
        status=target,
        attempts=delivery.attempts + 1,
        last_error=None,
        sent_at=now,
    )


def on_failure(
    delivery: Delivery,
    error: str,
    now: datetime,
    policy: RetryPolicy,
    *,
    retryable: bool = True,
    unit_random: Callable[[], float] | None = None,
) -> Delivery | Rejection:
    """Schedule a retry, or fail the delivery when it was the last attempt or not retryable.

    ``unit_random`` defaults to a generator seeded with the delivery id and attempt number:
    jitter that differs between deliveries yet is the same on every replay.
    """
    attempts = delivery.attempts + 1
    outcome: Outcome = "retry" if retryable and attempts < policy.max_attempts else "give_up"
    target = _target(delivery, outcome)
    if isinstance(target, Rejection):
        return target
    next_attempt_at = delivery.next_attempt_at
    if outcome == "retry":
        draw = unit_random or random.Random(f"{delivery.id}:{attempts}").random
        next_attempt_at = now + timedelta(seconds=backoff_seconds(attempts, policy, draw()))
    return replace(
        delivery,
        status=target,
        attempts=attempts,
        last_error=error[:MAX_ERROR_CHARS],
        next_attempt_at=next_attempt_at,
    )


def is_due(delivery: Delivery, now: datetime) -> bool:
    return delivery.status == "pending" and delivery.next_attempt_at <= now


def _target(delivery: Delivery, outcome: Outcome) -> DeliveryStatus | Rejection:
    target = TRANSITIONS.get((delivery.status, outcome))
    if target is None:
        return Rejection(f"delivery {delivery.id} is {delivery.status}; cannot record {outcome}")
    return target
