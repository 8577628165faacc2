"""A consumed Kafka batch through the spine: one find, decide, one bulk write, publish.

A service describes its side with a :class:`BatchDecider`: which aggregates a batch
touches (``select``), which one a message is for (``route``), what it decides
(``decide``, pure) and what it answers to a message it applied already (``repeat``).
Many messages for one aggregate in one batch are decided in order, each on the state the
previous one left (the coordinator folds a run's events, then advances it, this way).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from contracts import Envelope
from shared.spine.aggregate import Aggregate, Decided
from shared.spine.store import AggregateStore


class BatchDecider(Protocol):
    def select(self, batch: Sequence[Envelope]) -> Mapping[str, Any]:
        """The query that loads every aggregate the batch touches (one find)."""
        ...

    def route(self, message: Envelope, aggregates: Mapping[str, Aggregate]) -> str | None:
        """The key of the aggregate ``message`` is for (None: it is for none)."""
        ...

    def decide(self, aggregate: Aggregate, message: Envelope) -> Decided: ...

    def repeat(self, aggregate: Aggregate, message: Envelope) -> Sequence[Envelope]:
        """What to answer to a message the aggregate applied already (often nothing)."""
        ...


@dataclass(frozen=True)
class Plan:
    """The batch decided: the aggregates after it, and what to send without storing."""

    aggregates: Mapping[str, Aggregate]
    answers: tuple[Envelope, ...] = ()

    @property
    def changed(self) -> list[Aggregate]:
        return [a for a in self.aggregates.values() if a.changed]


def plan(loaded: Mapping[str, Aggregate], batch: Sequence[Envelope],
         decider: BatchDecider) -> Plan:
    """Decide every message of the batch in order; messages applied already are dropped."""
    working = dict(loaded)
    answers: list[Envelope] = []
    for message in batch:
        key = decider.route(message, working)
        if key is None:
            continue
        aggregate = working.get(key) or Aggregate(key)
        if message.event_id in aggregate.applied:
            answers.extend(decider.repeat(aggregate, message))
            continue
        working[key] = aggregate.after(decider.decide(aggregate, message), message.event_id)
    for key, aggregate in working.items():
        answers.extend(aggregate.answers)
        if aggregate.answers:
            working[key] = aggregate.with_answers(())
    return Plan(working, tuple(answers))


async def commit(store: AggregateStore, decided: Plan) -> None:
    """Save the changed aggregates (one write), publish their outboxes, then the answers.

    A :class:`~shared.spine.aggregate.Conflict` propagates: the consumer retries the
    batch, which reads again; what landed is dropped then as applied.
    """
    await store.save(decided.changed)
    await store.publish(decided.answers)


async def process(store: AggregateStore, batch: Sequence[Envelope],
                  decider: BatchDecider) -> Plan:
    """One consumed batch: one find, decide, one bulk write, publish."""
    decided = plan(await store.load_where(decider.select(batch)), batch, decider)
    await commit(store, decided)
    return decided
