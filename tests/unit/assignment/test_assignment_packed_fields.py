"""A work item document as stored (decision 32): what the server reads stays plain, the rest
is one packed value, and opening it gives back the document as it was built."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from assignment_builders import NOW

from contracts.events.workitems import AssigneeSpec, Escalation
from services.assignment.core.workitem import AuditEntry, Status, WorkItem
from services.assignment.store import PACKING, PLAIN, item_of, next_document
from shared.packed import Packing, opened, packed


def document(**fields: Any) -> dict[str, Any]:
    item = WorkItem(
        id="r1:review:1", run_id="r1", orchestration="o", version=1, stage="s", step="review",
        attempt=1, kind="approval", title="Review", status=Status.CLAIMED,
        assignee_kind="queue", assignee="desk", recipients=("ann", "bo"), claimed_by="ann",
        requested_assignee=AssigneeSpec(kind="queue", value="desk"),
        form={"fields": [{"name": "ok", "type": "boolean"}]},
        record={"customer": {"name": "Ada", "tags": ["a", "b"]}},
        context={"vars": {"n": 1}, "inputs": {"amount": 12.5}},
        due_at=NOW + timedelta(days=1), reminders_before_due_seconds=(3600.0,),
        escalation=Escalation(after_due_seconds=60.0, action="notify"),
        created_at=NOW, updated_at=NOW + timedelta(minutes=1), epoch=2,
        history=(AuditEntry(at=NOW, actor="system", action="open", field="status", new="open"),
                 AuditEntry(at=NOW, actor="ann", action="claim", field="claimed_by",
                            new="ann")),
        **fields)
    return next_document(None, item, published=[], now=NOW, correlation_id="c1")


def test_only_what_the_server_reads_stays_plain_beside_one_packed_value() -> None:
    doc = document()
    stored = PACKING.pack(doc)
    assert set(stored) == (set(doc) & PLAIN) | {"state"}
    assert isinstance(stored["state"], bytes)
    inside = opened(stored["state"])
    assert {"history", "record", "context", "form", "outputs", "applied",
            "correlation_id"} <= set(inside)
    assert {"lookup", "status", "due_at", "created_at", "revision"} <= set(stored)


def as_read(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` written and read back by MongoDB (tuples come back as lists)."""
    return opened(packed(doc))


def test_an_opened_document_is_the_document_built() -> None:
    doc = document()
    assert PACKING.open(as_read(PACKING.pack(doc))) == as_read(doc)
    assert item_of(PACKING.open(as_read(PACKING.pack(doc)))) == item_of(doc)


def test_a_document_written_before_packing_opens_as_it_is() -> None:
    doc = as_read(document())
    assert PACKING.open(dict(doc)) == doc


def test_a_list_leaves_packed_fields_out_after_opening() -> None:
    """The server can only leave out the packed value whole: it comes, and the fields a
    list does not show are dropped once opened."""
    leaving_out = ["history", "outbox", "record"]
    assert PACKING.leaving_out(leaving_out) == {"outbox": 0}
    listed = PACKING.open(PACKING.pack(document()), leaving_out)
    assert "history" not in listed and "record" not in listed
    assert listed["context"] == {"vars": {"n": 1}, "inputs": {"amount": 12.5}}
    item = item_of(listed)
    assert item is not None and item.history == () and item.title == "Review"


def test_a_store_with_nothing_to_pack_writes_documents_as_they_are() -> None:
    doc = document()
    assert Packing().pack(doc) is doc
