"""Dropping the indexes an older version made, when replicas start at once: the index one
of them dropped between another's look and its drop is not an error (shared.mongo)."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.errors import OperationFailure

from shared.mongo import INDEX_NOT_FOUND, drop_index, drop_retired, make_client

pytestmark = pytest.mark.integration


class LookedEarlier:
    """A collection as another replica saw it: its indexes as read before a drop."""

    def __init__(self, collection: Any, indexes: dict[str, Any]) -> None:
        self.collection = collection
        self.name = collection.name
        self.indexes = indexes

    async def index_information(self) -> dict[str, Any]:
        return self.indexes

    async def drop_index(self, name: str) -> None:
        await self.collection.drop_index(name)


async def test_an_index_another_replica_dropped_first_is_not_an_error(
        servers: Any, database: str) -> None:
    client = make_client(servers.mongodb_uri, app_name="retired-indexes")
    try:
        items = client[database]["retired_race"]
        await items.create_index([("a", 1)], name="a_1")
        await items.create_index([("b", 1)], name="b_1")
        seen_by_the_second = await items.index_information()

        assert await drop_retired(items, ["a_1", "b_1", "never_made_1"]) == ["a_1", "b_1"]
        # The second replica looked before the first dropped them: nothing left to drop.
        late = LookedEarlier(items, seen_by_the_second)
        assert await drop_retired(late, ["a_1", "b_1"]) == []  # type: ignore[arg-type]
        assert set(await items.index_information()) == {"_id_"}
        assert await drop_index(items, "a_1") is False
    finally:
        await client.close()


async def test_another_error_of_a_drop_is_raised(servers: Any, database: str) -> None:
    client = make_client(servers.mongodb_uri, app_name="retired-indexes")
    try:
        items = client[database]["retired_race"]
        await items.insert_one({"a": 1})
        with pytest.raises(OperationFailure) as raised:
            await drop_index(items, "_id_")  # the server refuses to drop the _id index
        assert raised.value.code != INDEX_NOT_FOUND
    finally:
        await client.close()
