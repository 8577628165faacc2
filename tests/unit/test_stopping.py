"""Periodic jobs end when cancelled, and a shutdown goes through every step."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from shared.stopping import repeat, stop_step


async def test_a_job_that_swallows_its_cancel_is_not_run_again() -> None:
    calls = 0

    async def swallows_the_cancel() -> None:  # as asyncio.wait_for can in Python 3.11
        nonlocal calls
        calls += 1
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)

    task = asyncio.create_task(repeat(0.0, swallows_the_cancel, "job"))
    await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)

    assert task in done and task.cancelled()
    assert calls == 1


async def test_a_failing_job_runs_again() -> None:
    calls = 0

    async def fails() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            task.cancel()
        raise RuntimeError("boom")

    task = asyncio.create_task(repeat(0.0, fails, "job"))
    with pytest.raises(asyncio.CancelledError):
        await task

    assert calls == 3


async def test_a_step_that_raises_is_reported_and_the_next_one_runs() -> None:
    async def fails() -> None:
        raise RuntimeError("broker gone")

    async def works() -> None:
        pass

    assert [await stop_step(fails, "a"), await stop_step(works, "b")] == [False, True]


async def test_a_cancel_from_inside_a_step_is_taken_as_stopped() -> None:
    async def cancelled_fetch() -> None:  # aiokafka's consumer.stop() with a fetch in flight
        fetch = asyncio.create_task(asyncio.sleep(3600))
        await asyncio.sleep(0)
        fetch.cancel()
        await fetch

    assert await stop_step(cancelled_fetch, "a consumer") is True


async def test_the_shutdown_itself_cancelled_is_not_swallowed() -> None:
    started = asyncio.Event()

    async def waits() -> None:
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(stop_step(waits, "a step"))
    await started.wait()
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
