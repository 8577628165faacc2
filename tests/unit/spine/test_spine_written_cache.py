"""The aggregates a process saved, loaded from memory as a read gives them
(shared/spine/written.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import bson
import pytest

from shared.spine.aggregate import Aggregate, Conflict, Decided, document_of
from shared.spine.memory_store import MemoryAggregateStore
from shared.spine.written import WrittenCache

AT = datetime(2025, 3, 3, 9, 0, 0, 123456, tzinfo=UTC)


def active(aggregate: Aggregate) -> bool:
    return (aggregate.state or {}).get("status") == "open"


def opened(key: str, status: str = "open") -> Aggregate:
    return Aggregate(key).after(Decided(state={"status": status, "at": AT, "tags": ("a",)}), "m1")


async def test_a_saved_aggregate_loads_from_memory_as_a_read_gives_it() -> None:
    store = MemoryAggregateStore()
    cache = WrittenCache(store, keep=active)
    await cache.save([opened("a")])
    store.round_trips.clear()
    from_memory = (await cache.load(["a"]))["a"]
    assert store.round_trips == {}
    read = (await store.load(["a"]))["a"]
    assert from_memory.cached and not read.cached
    assert from_memory.state == {"status": "open", "at": AT.replace(microsecond=123000),
                                 "tags": ["a"]}  # as MongoDB keeps them
    assert (from_memory.revision, from_memory.applied) == (read.revision, read.applied)
    assert read.revision == 1 and read.applied == ("m1",)


async def test_finished_lost_and_failed_saves_are_not_kept_and_the_oldest_leave() -> None:
    store = MemoryAggregateStore()
    cache = WrittenCache(store, keep=active, size=2)
    await cache.save([opened("done", "completed"), opened("a"), opened("b"), opened("c")])
    assert set(cache._written) == {"b", "c"}  # a left first, done was not kept
    store.documents["b"]["revision"] = 7  # another writer moved it on
    b = (await cache.load(["b"]))["b"]
    with pytest.raises(Conflict):
        await cache.save([b.after(Decided(state={"status": "open"}))])
    assert set(cache._written) == {"c"}
    c = (await cache.load(["c"]))["c"]

    async def away() -> None:
        raise ConnectionError("the server went away mid-write")

    store.before_write = away
    with pytest.raises(ConnectionError):
        await cache.save([c.after(Decided(state={"status": "open", "n": 1}))])
    assert cache._written == {}


async def test_the_bytes_kept_are_bounded_too_the_oldest_leaving_first() -> None:
    store = MemoryAggregateStore()
    one = len(bson.encode(document_of(opened("a"), None)))  # each document as kept
    cache = WrittenCache(store, keep=active, budget=2 * one + one // 2)
    await cache.save([opened("a"), opened("b")])
    assert set(cache._written) == {"a", "b"}
    await cache.save([opened("c")])
    assert set(cache._written) == {"b", "c"}  # a left: three did not fit
    cache.forget(["b"])
    await cache.save([opened("d")])
    assert set(cache._written) == {"c", "d"}  # b's bytes were given back: nothing left
    store.round_trips.clear()
    assert (await cache.load(["c", "d"]))["d"].cached
    assert store.round_trips == {}
