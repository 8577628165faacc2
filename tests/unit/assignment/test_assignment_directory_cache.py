"""The directory cache: callers that find it expired share one read (an in-memory stand-in
for the directory document; the real one is exercised by the integration and e2e tests)."""

from __future__ import annotations

import asyncio
from typing import Any

from services.assignment import directory_store
from services.assignment.directory_store import DirectoryStore


class _Collection:
    def __init__(self, db: _Db, name: str) -> None:
        self.db, self.name = db, name

    async def find_one(self, _: Any) -> dict[str, Any]:
        assert self.name == directory_store.DIRECTORY
        self.db.finds += 1
        await asyncio.sleep(0.01)  # a round trip: concurrent callers overlap in it
        return {"_id": "current", "revision": 1, **self.db.data}


class _Db:
    def __init__(self) -> None:
        self.finds = 0
        self.data: dict[str, list[dict[str, Any]]] = {
            "users": [{"id": "ann"}], "groups": [], "queues": []}

    def __getitem__(self, name: str) -> _Collection:
        return _Collection(self, name)


async def test_callers_of_an_expired_cache_share_one_read() -> None:
    db = _Db()
    store = DirectoryStore(db)  # type: ignore[arg-type]
    seen = await asyncio.gather(*(store.current() for _ in range(40)))
    assert db.finds == 1  # one read of the directory document, not 40
    assert all("ann" in d.users for d in seen)
    await store.current()
    assert db.finds == 1  # cached


async def test_fresh_reads_again_and_an_old_read_is_not_cached(monkeypatch: Any) -> None:
    db = _Db()
    store = DirectoryStore(db)  # type: ignore[arg-type]
    await store.current()
    db.data["users"] = [{"id": "ann"}, {"id": "bo"}]
    assert "bo" not in (await store.current()).users  # still cached
    assert "bo" in (await store.current(fresh=True)).users
    monkeypatch.setattr(directory_store, "CACHE_SECONDS", -1.0)  # every read expires
    reading = asyncio.ensure_future(store.current())
    await asyncio.sleep(0)
    store._generation += 1  # a load lands while that read is in flight (as load() does)
    store._cached = None
    await reading
    assert store._cached is None
