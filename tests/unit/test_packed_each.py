"""packed_each packs values as packed() packs each, in one encoding."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.packed import opened, packed, packed_each


def entry(n: int) -> dict[str, object]:
    return {"at": datetime(2026, 3, 1, 9, 0, n % 60, tzinfo=UTC), "kind": "StepStarted",
            "n": n, "changes": [{"field": "steps.a.status", "old": None, "new": "é"}],
            "outputs": {"nested": {"list": [1, 2.5, None, b"raw"]}}}


def test_each_value_is_the_bytes_packed_gives_it() -> None:
    for count in (0, 1, 2, 10, 11, 150):  # indexes of one, two and three digits
        values = [entry(n) for n in range(count)]
        assert packed_each(values) == [packed(v) for v in values]


def test_a_value_with_an_id_is_packed_as_packed_packs_it() -> None:
    values = [{"a": 1, "_id": "x"}, {"b": 2}]
    assert packed_each(values) == [packed(v) for v in values]
    assert list(opened(packed_each(values)[0])) == ["_id", "a"]
