"""Opens and withdraws work items from the coordinator's dispatches.

Per batch: one find for the items the batch touches, decide per message with the pure
core, one bulk write of the items with their outboxes and timers, publish, clear.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pymongo import ReplaceOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from contracts import Envelope, parse_dict
from contracts.envelope import derived_id, new_event
from contracts.events.workitems import WorkItemCancelRequested, WorkItemRequested
from services.assignment.core.commands import Cancel, OpenWorkItem
from services.assignment.core.decide import handle
from services.assignment.core.rejection import Rejection
from services.assignment.core.workitem import WorkItem
from services.assignment.directory_store import DirectoryStore
from shared.messaging import Publisher
from shared.mongo import Index

log = logging.getLogger("baton.assignment")
PRODUCER = "assignment"
WORK_ITEMS = "work_items"
INDEXES = [
    Index(WORK_ITEMS, [("run_id", 1), ("step", 1)]),
    Index(WORK_ITEMS, [("status", 1), ("assignee_kind", 1), ("assignee", 1), ("due_at", 1)]),
    Index(WORK_ITEMS, [("recipients", 1), ("status", 1)]),
    Index(WORK_ITEMS, [("outbox_at", 1)], options={"sparse": True}),
    Index(WORK_ITEMS, [("timers.due_at", 1)]),
]


def work_item_id(run_id: str, step: str, attempt: int) -> str:
    return f"{run_id}:{step}:{attempt}"


class DispatchHandler:
    def __init__(self, db: AsyncDatabase[dict[str, Any]], directory: DirectoryStore,
                 publisher: Publisher) -> None:
        self.items = db[WORK_ITEMS]
        self.directory = directory
        self.publisher = publisher

    async def __call__(self, envelopes: list[Envelope]) -> None:
        run_ids = list({e.run_id for e in envelopes if e.run_id})
        docs = await self.items.find({"run_id": {"$in": run_ids}}).to_list(None)
        items = {d["_id"]: d for d in docs}
        directory = await self.directory.current()
        writes: dict[str, dict[str, Any]] = {}
        for envelope in envelopes:
            payload = envelope.payload
            run_id = envelope.run_id or ""
            if isinstance(payload, WorkItemRequested):
                item_id = work_item_id(run_id, payload.step, payload.attempt)
                command: Any = OpenWorkItem(item_id, run_id, payload)
            elif isinstance(payload, WorkItemCancelRequested):
                open_items = [d for d in {**items, **writes}.values() if d["run_id"] == run_id
                              and d["step"] == payload.step and d["status"] in ("open", "claimed")]
                if not open_items:
                    continue
                item_id = open_items[-1]["_id"]
                command = Cancel(reason=payload.reason)
            else:
                continue
            current_doc = writes.get(item_id) or items.get(item_id)
            current = _item(current_doc)
            updated, decision = handle(current, command, envelope.occurred_at, directory)
            if isinstance(decision, Rejection):
                log.info("%s on %s rejected: %s", envelope.type, item_id, decision.reason)
                continue
            outbox = [
                new_event(p, producer=PRODUCER, cause=envelope,
                          event_id=derived_id(envelope.event_id, i)).model_dump(mode="json")
                for i, p in enumerate(decision.published)
            ]
            if not outbox and updated == current:
                continue
            base = _document(updated, item_id, run_id, payload) if updated else dict(current_doc or {})
            base["outbox"] = [*(current_doc or {}).get("outbox", []), *outbox]
            base["outbox_at"] = envelope.occurred_at
            base["timers"] = [*(current_doc or {}).get("timers", []),
                              *({"purpose": t.purpose, "due_at": t.due_at, "epoch": t.epoch,
                                 "overdue": t.overdue} for t in decision.timers)]
            writes[item_id] = base
        if not writes:
            return
        await self.items.bulk_write(
            [ReplaceOne({"_id": k}, v, upsert=True) for k, v in writes.items()], ordered=False
        )
        await self.publisher.publish(parse_dict(m) for d in writes.values() for m in d["outbox"])
        await self.items.bulk_write(
            [UpdateOne({"_id": k}, {"$set": {"outbox": []}, "$unset": {"outbox_at": ""}})
             for k in writes], ordered=False,
        )


def _item(doc: dict[str, Any] | None) -> WorkItem | None:
    if doc is None or "status" not in doc:
        return None
    fields = {k: v for k, v in doc.items() if k in WorkItem.model_fields}
    return WorkItem.model_validate({**fields, "id": doc["_id"]})


def _document(item: WorkItem, item_id: str, run_id: str, payload: Any) -> dict[str, Any]:
    doc = item.model_dump(mode="python", exclude={"id"})
    doc["_id"] = item_id
    return doc


def _now(envelope: Envelope) -> datetime:
    return envelope.occurred_at
