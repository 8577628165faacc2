"""The history's changes of an event: every audited field whose value differs, a missing
field counting as None, in the order of the fields before and then of those added."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from services.stage_coordinator.core.transition import changed

FIELDS = st.dictionaries(st.sampled_from(["status", "stage", "steps.a.status", "vars.x", "t"]),
                         st.one_of(st.none(), st.integers(0, 2), st.sampled_from(["a", "b"])))


@given(FIELDS, FIELDS)
def test_changed_names_each_differing_field_once(old: dict[str, Any], new: dict[str, Any]
                                                  ) -> None:
    changes = changed(old, new)
    expected = [key for key in [*old, *(k for k in new if k not in old)]
                if old.get(key) != new.get(key)]
    assert [c["field"] for c in changes] == expected
    for change in changes:
        assert change["old"] == old.get(change["field"])
        assert change["new"] == new.get(change["field"])


def test_a_field_that_appears_with_none_or_leaves_from_none_is_no_change() -> None:
    assert changed({"error": None}, {}) == []
    assert changed({}, {"error": None}) == []
    assert changed({"status": "running"}, {"status": "completed", "error": "x"}) == [
        {"field": "status", "old": "running", "new": "completed"},
        {"field": "error", "old": None, "new": "x"}]
