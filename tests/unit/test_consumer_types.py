"""A consumer that wants only some message types passes over the others unparsed."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry

from contracts import Envelope, encode, headers_of
from contracts.envelope import new_event
from contracts.events.workitems import WorkItemAssigned, WorkItemCompleted
from shared.messaging import BatchConsumer
from shared.metrics import ServiceMetrics
from shared.settings import ServiceSettings


class Recorded:
    def __init__(self) -> None:
        self.handled: list[Envelope] = []
        self.published: list[Envelope] = []

    async def handle(self, envelopes: list[Envelope]) -> None:
        self.handled.extend(envelopes)

    async def publish(self, envelopes: Any) -> None:
        self.published.extend(envelopes)


def event(payload: Any) -> Envelope:
    return new_event(payload, producer="assignment", run_id="r1")


def record(offset: int, value: bytes, headers: dict[str, str] | None) -> Any:
    return SimpleNamespace(topic="workitems.events", partition=0, offset=offset, key=b"r1",
                           value=value, headers=[(k, v.encode()) for k, v in
                                                 (headers or {}).items()])


def item(cls: type, **extra: Any) -> Any:
    return cls(work_item_id="w1", step="legal", title="Legal review", assignee="alice",
               recipients=["alice"], **extra)


async def test_only_the_wanted_types_are_parsed_and_unlabelled_records_are_still_checked() -> None:
    seen = Recorded()
    consumer = BatchConsumer(
        topics=["workitems.events"], group_id="g", handler=seen.handle,
        publisher=seen,  # type: ignore[arg-type]
        metrics=ServiceMetrics(CollectorRegistry(), "test"), settings=ServiceSettings(),
        types={"WorkItemAssigned"})
    assigned, completed = event(item(WorkItemAssigned)), event(item(WorkItemCompleted))
    await consumer.consume([
        record(0, encode(assigned), headers_of(assigned)),
        record(1, encode(completed), headers_of(completed)),  # not wanted: passed over
        record(2, b"{not json", {"type": "WorkItemCompleted"}),  # its own consumer's to check
        record(3, b"{not json", None),  # no type header: parsed, so dead-lettered here
    ])

    assert [e.event_id for e in seen.handled] == [assigned.event_id]
    (dead,) = seen.published
    assert dead.payload.source_offset == 3 and "unparseable" in dead.payload.reason
