"""An outbox's stamp as a key (decision 37): the buckets of a window, the key a save writes,
and the sweep's reads by key giving exactly the documents a filter on the stamps gives."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.envelope import new_event
from contracts.events.workitems import WorkItemCancelRequested
from shared.spine import Aggregate, Decided
from shared.spine.aggregate import document_of
from shared.spine.memory_store import MemoryMarks
from shared.spine.mongo_marks import MongoMarks
from shared.spine.stamp_keys import (
    CHUNK,
    MAX_KEYS,
    bucket_start,
    stamp_key,
    window_keys,
    with_stamp_key,
)

T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_stamp_falls_in_the_bucket_of_its_ten_seconds() -> None:
    assert stamp_key("w", at(0)) == "outbox:w:2026-12-01T10:00:00"
    assert stamp_key("w", at(9.999)) == "outbox:w:2026-12-01T10:00:00"
    assert stamp_key("w", at(10)) == "outbox:w:2026-12-01T10:00:10"
    assert stamp_key("w", at(59.5)) == "outbox:w:2026-12-01T10:00:50"
    # The same instant read back naive (UTC) or in another zone has the same key.
    assert stamp_key("w", at(12).replace(tzinfo=None)) == stamp_key("w", at(12))
    elsewhere = at(12).astimezone(timezone(timedelta(hours=2)))
    assert stamp_key("w", elsewhere) == stamp_key("w", at(12))


def test_the_keys_of_a_window_cover_its_edges_and_nothing_past_them() -> None:
    # (10:00:10, 10:00:20]: a stamp just after the start is in the bucket 10:00:10, one
    # at the end exactly in the bucket 10:00:20.
    assert window_keys("w", at(10), at(20)) == ["outbox:w:2026-12-01T10:00:10",
                                                "outbox:w:2026-12-01T10:00:20"]
    assert window_keys("w", at(10), at(20) - MS) == ["outbox:w:2026-12-01T10:00:10"]
    assert window_keys("w", at(11), at(12)) == ["outbox:w:2026-12-01T10:00:10"]
    assert window_keys("w", at(12), at(12)) == []
    assert window_keys("w", at(13), at(12)) == []


def test_a_long_window_is_read_in_chunks_and_a_very_long_one_not_by_key() -> None:
    keys = window_keys("w", at(0), at(3 * 3600))  # three hours: 1,081 buckets
    assert keys is not None and len(keys) == 3 * 360 + 1
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert len(keys) > CHUNK
    assert window_keys("w", at(0), at(MAX_KEYS * 10 - 1)) is not None
    assert window_keys("w", at(0), at(MAX_KEYS * 10)) is None


def test_a_save_writes_its_stamps_key_in_place_of_the_last_one() -> None:
    assert with_stamp_key(["run:r", "outbox:old:2026-01-01T00:00:00"], "w", at(3)) == [
        "run:r", stamp_key("w", at(3))]
    assert with_stamp_key(["run:r", "outbox:old:2026-01-01T00:00:00"], "w", None) == ["run:r"]
    assert with_stamp_key(None, "w", at(3)) == [stamp_key("w", at(3))]
    read = Aggregate("k", state={"lookup": ["run:r", stamp_key("old", at(0))]}, revision=1)
    quiet = read.after(Decided(timers=()))  # the state as read, nothing to send
    assert document_of(quiet, at(30), "w", "lookup")["lookup"] == ["run:r"]
    told = new_event(WorkItemCancelRequested(step="a", reason="r"), producer="test",
                     run_id="k")
    sending = read.after(Decided(publish=[told]))
    doc = document_of(sending, at(30), "w", "lookup")
    assert doc["lookup"] == ["run:r", stamp_key("w", at(30))]
    # A store without a key field leaves the service's field as it is.
    assert document_of(sending, at(30), "w")["lookup"] == read.state["lookup"]  # type: ignore[index]


def stamped_doc(key: str, writer: str | None, stamp: datetime | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": key, "revision": 1, "outbox": b"x",
                           "lookup": with_stamp_key(["run:" + key], writer, stamp)}
    if writer is not None and stamp is not None:
        doc.update(outbox_by=writer, outbox_at=stamp)
    return doc


def by_filter(docs: Mapping[str, dict[str, Any]], writer: str, after: datetime,
              until: datetime) -> set[str]:
    return {k for k, d in docs.items() if d.get("outbox_by") == writer
            and after < d["outbox_at"] <= until}


OFFSETS = st.integers(min_value=-5_000, max_value=200_000)  # ms around T0 (up to 200 s)
STAMPED = st.lists(st.tuples(st.sampled_from(["a", "b", None]), OFFSETS), max_size=40)


@settings(max_examples=200, deadline=None)
@given(STAMPED, st.sampled_from(["a", "b"]), OFFSETS, OFFSETS)
async def test_the_sweep_by_keys_finds_what_a_filter_on_the_stamps_finds(
    stamped: list[tuple[str | None, int]], writer: str, start: int, end: int,
) -> None:
    docs = {f"d{i}": stamped_doc(f"d{i}", w, T0 + ms * MS if w else None)
            for i, (w, ms) in enumerate(stamped)}
    marks = MemoryMarks(docs, {}, Counter(), "lookup")
    after, until = T0 + start * MS, T0 + end * MS
    found = await marks.stamped(writer, after, until)
    assert {d["_id"] for d in found} == by_filter(docs, writer, after, until)
    stamps = sorted({d["outbox_at"] for d in docs.values() if d.get("outbox_by") == writer})
    some = stamps[::2]
    found_at = await marks.stamped_at(writer, some)
    assert {d["_id"] for d in found_at} == {k for k, d in docs.items()
                                            if d.get("outbox_by") == writer
                                            and d["outbox_at"] in some}


class Keyed:
    """A collection that answers ``{field: {"$in": keys}}`` from documents, counting reads."""

    name = "c"

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs
        self.reads: list[int] = []

    def find(self, query: Mapping[str, Any], fields: Any = None) -> Keyed:
        (field, clause), = query.items()
        wanted = set(clause["$in"])
        self.reads.append(len(wanted))
        self.found = [d for d in self.docs if wanted & set(d.get(field) or ())]
        return self

    async def to_list(self, _: Any) -> list[dict[str, Any]]:
        return self.found


async def test_mongodb_reads_a_window_a_chunk_of_keys_at_a_time() -> None:
    docs = [stamped_doc(f"d{i}", "a", at(i * 5)) for i in range(2_400)]  # 3 h 20 min
    collection = Keyed(docs)
    marks = MongoMarks(collection, collection, "lookup")  # type: ignore[arg-type]
    found = await marks.stamped("a", at(-1), at(12_000))
    assert {d["_id"] for d in found} == {d["_id"] for d in docs}
    assert collection.reads == [CHUNK, 202]  # 1,202 buckets (09:59:50 on): two reads
    collection.reads.clear()
    found = await marks.stamped("a", at(7), at(12))  # the bucket 10:00:00 holds d0 and d1
    assert [d["_id"] for d in found] == ["d2"]
    assert collection.reads == [2]
    collection.reads.clear()
    assert [d["_id"] for d in await marks.stamped_at("a", [at(5), at(10)])] == ["d1", "d2"]
    assert collection.reads == [2]


def test_bucket_start_is_utc() -> None:
    assert bucket_start(at(19.5)) == at(10)
    assert bucket_start(at(19.5).replace(tzinfo=None)) == at(10)
