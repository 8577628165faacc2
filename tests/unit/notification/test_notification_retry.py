"""Delivery transitions: sent, retried with jittered back-off, failed after the last attempt."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notification.core.model import Delivery
from services.notification.core.retry import (
    TRANSITIONS,
    Rejection,
    RetryPolicy,
    backoff_seconds,
    is_due,
    on_failure,
    on_success,
)

T0 = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
NO_JITTER = RetryPolicy(max_attempts=4, base_delay_seconds=10, max_delay_seconds=60, jitter=0)


def pending(**changes: object) -> Delivery:
    delivery = Delivery(
        id="d1",
        source_event_id="e1",
        source_type="WorkItemAssigned",
        recipient="u-ada",
        channel="email",
        template="work_item_assigned",
        subject="s",
        body="b",
        next_attempt_at=T0,
        created_at=T0,
    )
    return replace(delivery, **changes)  # type: ignore[arg-type]


def test_success_marks_sent_and_counts_the_attempt() -> None:
    sent = on_success(pending(attempts=2, last_error="timeout"), T0)

    assert isinstance(sent, Delivery)
    assert (sent.status, sent.attempts, sent.last_error, sent.sent_at) == ("sent", 3, None, T0)


def test_a_retryable_failure_schedules_exponential_back_off() -> None:
    delivery = pending()
    delays = []
    for _ in range(3):
        result = on_failure(delivery, "451 try later", T0, NO_JITTER)
        assert isinstance(result, Delivery)
        assert result.status == "pending"
        delays.append(result.next_attempt_at - T0)
        delivery = result

    assert delays == [timedelta(seconds=10), timedelta(seconds=20), timedelta(seconds=40)]
    assert delivery.attempts == 3
    assert delivery.last_error == "451 try later"


def test_the_last_attempt_fails_for_good() -> None:
    failed = on_failure(pending(attempts=3), "still down", T0, NO_JITTER)

    assert isinstance(failed, Delivery)
    assert (failed.status, failed.attempts, failed.last_error) == ("failed", 4, "still down")


def test_a_permanent_error_fails_at_once() -> None:
    failed = on_failure(pending(), "550 no such user", T0, NO_JITTER, retryable=False)

    assert isinstance(failed, Delivery)
    assert (failed.status, failed.attempts) == ("failed", 1)


@pytest.mark.parametrize("status", ["sent", "failed"])
def test_finished_deliveries_reject_further_outcomes(status: str) -> None:
    done = pending(status=status)

    assert isinstance(on_success(done, T0), Rejection)
    assert isinstance(on_failure(done, "x", T0, NO_JITTER), Rejection)
    assert isinstance(on_failure(done, "x", T0, NO_JITTER, retryable=False), Rejection)


def test_transition_table_only_leaves_pending() -> None:
    assert {source for source, _ in TRANSITIONS} == {"pending"}


def test_jitter_comes_from_the_injected_random() -> None:
    policy = RetryPolicy(base_delay_seconds=100, max_delay_seconds=1000, jitter=0.5)

    low = on_failure(pending(), "e", T0, policy, unit_random=lambda: 0.0)
    high = on_failure(pending(), "e", T0, policy, unit_random=lambda: 0.999999)

    assert isinstance(low, Delivery) and isinstance(high, Delivery)
    assert low.next_attempt_at == T0 + timedelta(seconds=50)
    assert high.next_attempt_at - T0 == pytest.approx(timedelta(seconds=150), abs=timedelta(0.1))


def test_default_jitter_is_seeded_by_delivery_and_attempt() -> None:
    policy = RetryPolicy(jitter=0.5)

    def retry_time(delivery: Delivery) -> datetime:
        result = on_failure(delivery, "e", T0, policy)
        assert isinstance(result, Delivery)
        return result.next_attempt_at

    assert retry_time(pending()) == retry_time(pending())
    assert retry_time(pending(id="d1")) != retry_time(pending(id="d2"))


def test_long_error_texts_are_truncated() -> None:
    result = on_failure(pending(), "x" * 10_000, T0, NO_JITTER)

    assert isinstance(result, Delivery) and result.last_error is not None
    assert len(result.last_error) == 500


def test_is_due() -> None:
    assert is_due(pending(), T0)
    assert not is_due(pending(), T0 - timedelta(seconds=1))
    assert not is_due(pending(status="sent"), T0 + timedelta(days=1))


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"base_delay_seconds": 10, "max_delay_seconds": 5}, {"jitter": 2}],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


@given(
    max_attempts=st.integers(1, 12),
    outcomes=st.lists(st.tuples(st.booleans(), st.floats(0, 0.999)), max_size=20),
    multiplier=st.floats(1, 1e6),
)
def test_retries_stay_within_bounds(
    max_attempts: int, outcomes: list[tuple[bool, float]], multiplier: float
) -> None:
    policy = RetryPolicy(max_attempts=max_attempts, multiplier=multiplier)
    delivery, now = pending(), T0
    for retryable, draw in outcomes:
        result = on_failure(
            delivery, "e", now, policy, retryable=retryable, unit_random=partial(float, draw)
        )
        if isinstance(result, Rejection):
            assert delivery.status == "failed"
            continue
        assert result.attempts == delivery.attempts + 1 <= max_attempts
        if result.status == "pending":
            delay = (result.next_attempt_at - now).total_seconds()
            assert 0 <= delay <= policy.max_delay_seconds
        else:
            assert result.status == "failed"
            assert not retryable or result.attempts == max_attempts
        delivery, now = result, result.next_attempt_at


def test_backoff_is_capped() -> None:
    assert backoff_seconds(50, RetryPolicy(max_delay_seconds=600, jitter=0.2), 0.99) == 600
