"""Periodic jobs and a service's shutdown steps, which must end when asked to.

A shutdown that waits on a job that goes on, or stops at the first step that raises,
holds the process until it is killed (infra/processes.py: SIGKILL after 10 s) and leaves
the rest unclosed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("baton.runtime")
Job = Callable[[], Awaitable[Any]]


async def repeat(seconds: float, job: Job, name: str) -> None:
    """Run ``job`` every ``seconds`` until cancelled; an error is logged, not fatal.

    A cancel the job swallowed still ends the loop: Python 3.11's asyncio.wait_for, which
    pymongo and aiokafka use, can drop a cancel that arrives as its wait ends (fixed in
    3.12), and a loop going on after it would hold the shutdown until it is killed.
    """
    task = asyncio.current_task()
    while True:
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("periodic job %s failed; it runs again in %.1fs", name, seconds)
        if task is not None and task.cancelling():
            log.info("periodic job %s was cancelled inside and stops", name)
            raise asyncio.CancelledError
        await asyncio.sleep(seconds)


async def stop_step(step: Job, what: str) -> bool:
    """Run one step of a shutdown; False (logged) when it failed.

    aiokafka's consumer.stop() can raise the CancelledError of the fetch it cancelled
    (aio-libs/aiokafka#647), as when the broker went away first: that is the consumer
    stopped, not this shutdown cancelled, which is re-raised.
    """
    try:
        await step()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.info("stopping %s: a request in flight was cancelled", what)
    except Exception:
        log.warning("stopping %s failed", what, exc_info=True)
        return False
    return True
