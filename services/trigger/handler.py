"""Consumes record changes and emits StartRun commands for the matching orchestrations."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter

from contracts import Envelope
from contracts.envelope import derived_id, new_event
from contracts.events.records import RecordChanged
from services.trigger.core.matching import Match, match, missed
from services.trigger.subscriptions import Subscriptions
from shared.definitions import Definition
from shared.messaging import Publisher

log = logging.getLogger("baton.trigger")
PRODUCER = "trigger"


class RecordChangeHandler:
    def __init__(
        self, subscriptions: Subscriptions, publisher: Publisher, registry: CollectorRegistry
    ) -> None:
        self.subscriptions = subscriptions
        self.publisher = publisher
        self.matched = Counter(
            "baton_trigger_matches_total", "Record changes that started a run",
            ["orchestration"], registry=registry,
        )
        self.skipped = Counter(
            "baton_trigger_skips_total", "Record changes a trigger could not evaluate",
            ["orchestration"], registry=registry,
        )
        self.unmatched = Counter(
            "baton_trigger_unmatched_total", "Record changes that started nothing, and why",
            ["object_type", "reason"], registry=registry,
        )

    async def __call__(self, envelopes: list[Envelope]) -> None:
        definitions = await self.subscriptions.current()
        out: list[Envelope] = []
        for envelope in envelopes:
            payload = envelope.payload
            if not isinstance(payload, RecordChanged):
                continue
            results = match(payload, envelope.event_id, definitions)
            if not any(isinstance(result, Match) for result in results):
                self._count_miss(payload, definitions)
            for result in results:
                if isinstance(result, Match):
                    self.matched.labels(result.command.orchestration).inc()
                    out.append(
                        new_event(
                            result.command,
                            producer=PRODUCER,
                            run_id=result.run_id,
                            cause=envelope,
                            event_id=derived_id(envelope.event_id, "start", result.run_id),
                        )
                    )
                else:
                    self.skipped.labels(result.orchestration).inc()
                    log.warning("%s: %s", result.orchestration, result.reason)
        # Nothing to store: the ids are derived, so a redelivery re-sends the same commands.
        await self.publisher.publish(out)

    def _count_miss(self, change: RecordChanged, definitions: list[Definition]) -> None:
        why = missed(change, definitions)
        self.unmatched.labels(change.object_type, why.reason).inc()
        log.debug("record change %s %s/%s started nothing: %s", change.change,
                  change.object_type, change.record_id, why.describe(change))
