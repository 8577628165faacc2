"""The delivery_log page and the search's merge rules, without a database (decision 23)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.notification import delivery_log
from services.notification.core.model import Delivery

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return NOW + timedelta(seconds=seconds)


def listed(id_: str, created: int, status: str = "sent") -> dict[str, Any]:
    return {"id": id_, "created_at": at(created), "status": status, "recipient": "ann"}


def test_a_page_holds_the_deliveries_as_documents_and_flat_keys() -> None:
    deliveries = [Delivery(id=f"d{i}", source_event_id="e", source_type="WorkItemAssigned",
                           recipient=who, channel="email", template="t", subject="s", body="b",
                           next_attempt_at=NOW, created_at=NOW, status="sent", attempts=1)
                  for i, who in enumerate(["bob", "ann", "bob"])]

    page = delivery_log.page_document(deliveries, at(1))

    assert page["ids"] == ["d0", "d1", "d2"] and page["recipients"] == ["ann", "bob"]
    assert page["created_at"] == at(1) and page["deliveries"][1]["recipient"] == "ann"
    assert page["deliveries"][0]["id"] == "d0" and "_id" not in page["deliveries"][0]
    assert delivery_log.page_document(deliveries, at(1))["_id"] != page["_id"]


def test_newest_first_each_id_once_the_first_given_wins() -> None:
    given = [listed("a", 1, "pending"), listed("b", 3), listed("a", 1, "sent"), listed("c", 2)]

    found = delivery_log.newest(given, limit=10)

    assert [(d["id"], d["status"]) for d in found] == [("b", "sent"), ("c", "sent"),
                                                       ("a", "pending")]
    assert [d["id"] for d in delivery_log.newest(given, limit=2)] == ["b", "c"]


def test_a_page_older_than_the_limit_th_delivery_found_cannot_make_the_answer() -> None:
    found = [listed("a", 10), listed("b", 5), listed("c", 8)]

    assert delivery_log.is_older_than_found({"created_at": at(4)}, found, limit=3)
    assert not delivery_log.is_older_than_found({"created_at": at(5)}, found, limit=3)
    assert not delivery_log.is_older_than_found({"created_at": at(4)}, found, limit=4)
    assert delivery_log.is_older_than_found({"created_at": at(7)}, found, limit=2)


def test_a_page_is_filtered_by_recipient_then_status() -> None:
    page = {"deliveries": [listed("a", 1), {**listed("b", 1, "failed"), "recipient": "bob"}]}

    assert [d["id"] for d in delivery_log.of_recipient(page, "bob")] == ["b"]
    assert [d["id"] for d in delivery_log.of_recipient(page, None)] == ["a", "b"]
    assert delivery_log.with_status(page["deliveries"], "failed") == page["deliveries"][1:]
    assert delivery_log.search_query(None) == {} and delivery_log.search_query("x") == {
        "recipients": "x"}
