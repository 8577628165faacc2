"""The garbage collector as a service leaves it after start-up (decision 30)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from shared.runtime import COLLECTOR_THRESHOLDS, settle_the_collector


@pytest.fixture
def collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_what_start_up_made_is_frozen_and_young_collections_are_rarer(collector: None) -> None:
    kept = [object() for _ in range(1000)]
    settle_the_collector()
    assert gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold() == COLLECTOR_THRESHOLDS
    assert COLLECTOR_THRESHOLDS[0] > 700  # CPython's default


def test_cycles_made_afterwards_are_still_collected(collector: None) -> None:
    settle_the_collector()

    class Node:
        pass

    collected: list[int] = []
    a, b = Node(), Node()
    a.other, b.other = b, a  # type: ignore[attr-defined]
    watch = weakref.ref(a, lambda _: collected.append(1))
    del a, b
    gc.collect()
    assert watch() is None and collected == [1]
