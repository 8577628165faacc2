"""A consumer that wants only some message types passes over the others unparsed."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from contracts import Envelope, encode, headers_of
from contracts.envelope import new_event
from contracts.events.workitems import WorkItemAssigned, WorkItemCompleted
from shared.messaging import BatchConsumer, Intake
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


async def test_an_intake_passes_over_what_its_hook_says_unparsed_and_commits_past_it() -> None:
    seen = Recorded()
    metrics = ServiceMetrics(CollectorRegistry(), "test")
    asked: list[int] = []

    def passes_over(record: Any) -> bool:
        asked.append(record.offset)
        return dict(record.headers).get("skip") == b"yes"

    consumer = BatchConsumer(
        topics=["workitems.events"], group_id="g", handler=seen.handle,
        publisher=seen,  # type: ignore[arg-type]
        metrics=metrics, settings=ServiceSettings(),
        intakes={"workitems.events": Intake(types=frozenset({"WorkItemAssigned"}),
                                            passes_over=passes_over)})
    kept = event(item(WorkItemAssigned))
    completed = event(item(WorkItemCompleted))
    await consumer.consume([
        record(0, encode(kept), headers_of(kept)),
        record(1, b"{not json", {"type": "WorkItemAssigned", "skip": "yes"}),  # not parsed
        record(2, encode(completed), headers_of(completed)),  # not wanted: not even asked
        record(3, b"{not json", {"type": "WorkItemAssigned", "skip": "no"}),  # parsed: dead
    ])

    assert asked == [0, 1, 3]
    assert [e.event_id for e in seen.handled] == [kept.event_id]
    (dead,) = seen.published
    assert dead.payload.source_offset == 3 and "unparseable" in dead.payload.reason
    assert metrics.registry.get_sample_value("baton_messages_passed_over_total", {
        "service": "test", "topic": "workitems.events"}) == 1
    # The watermarks count every record of the batch, passed over or not.
    assert consumer.watermarks.safe() == {TopicPartition("workitems.events", 0): 4}
