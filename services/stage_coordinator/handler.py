"""Applies a consumed batch: decide per message, one bulk write, publish, clear outboxes."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from contracts import Envelope, parse_dict
from contracts.envelope import derived_id, new_event
from contracts.events import commands as cmd
from services.stage_coordinator.core.decide import Context, decide
from services.stage_coordinator.core.state import Run
from services.stage_coordinator.core.transition import Rejection, Transition
from services.stage_coordinator.metrics import CoordinatorMetrics
from services.stage_coordinator.store import RunStore, StoredRun
from shared.definitions.store import DefinitionStore, UnknownDefinition
from shared.messaging import Publisher

log = logging.getLogger("baton.coordinator")
PRODUCER = "stage-coordinator"


class CoordinatorHandler:
    def __init__(
        self,
        store: RunStore,
        definitions: DefinitionStore,
        publisher: Publisher,
        metrics: CoordinatorMetrics,
    ) -> None:
        self.store = store
        self.definitions = definitions
        self.publisher = publisher
        self.metrics = metrics

    async def __call__(self, envelopes: list[Envelope]) -> None:
        by_run: dict[str, list[Envelope]] = defaultdict(list)
        for envelope in envelopes:
            if envelope.run_id:
                by_run[envelope.run_id].append(envelope)
            else:
                log.warning("dropping %s without run_id", envelope.type)
        stored = await self.store.load(list(by_run))
        pending = [s for s in stored.values() if s.outbox]  # a crash left these unpublished
        if pending:
            await self._publish(pending)
        changed: dict[str, StoredRun] = {}
        for run_id, messages in by_run.items():
            current = stored.get(run_id)
            for envelope in messages:
                result = await self._apply(run_id, current, envelope)
                if result is not None:
                    current = result
                    changed[run_id] = result
        if not changed:
            return
        refused = await self.store.save(list(changed.values()), datetime.now(UTC))
        written = [s for rid, s in changed.items() if rid not in refused]
        for run_id in refused:
            log.info("run %s refused: its record has an active run already", run_id)
        await self._publish(written)
        self.metrics.observe_transitions(written)

    async def _apply(
        self, run_id: str, current: StoredRun | None, envelope: Envelope
    ) -> StoredRun | None:
        if current is not None and envelope.event_id in current.applied:
            self.metrics.duplicates.inc()
            return None
        context = await self._context(run_id, current.run if current else None, envelope)
        if context is None:
            return None
        result = decide(current.run if current else None, envelope.payload, context)
        if isinstance(result, Rejection):
            self.metrics.rejections.labels(envelope.type).inc()
            log.info("rejected %s for run %s: %s", envelope.type, run_id, result.reason)
            return None
        return self._stored(current, result, envelope)

    async def _context(self, run_id: str, run: Run | None, envelope: Envelope) -> Context | None:
        payload = envelope.payload
        try:
            if run is not None:
                definition = await self.definitions.get(run.orchestration, run.version)
            elif isinstance(payload, cmd.StartRun):
                definition = await self.definitions.get(payload.orchestration, payload.version)
            else:
                log.info("%s for unknown run %s ignored", envelope.type, run_id)
                return None
            target = None
            if isinstance(payload, cmd.MigrateRun) and run is not None:
                target = await self.definitions.get(run.orchestration, payload.to_version)
        except UnknownDefinition as exc:
            self.metrics.rejections.labels(envelope.type).inc()
            log.warning("%s for run %s: %s", envelope.type, run_id, exc)
            return None
        actor = getattr(payload, "requested_by", None) or getattr(payload, "completed_by", None)
        return Context(
            run_id=run_id,
            now=envelope.occurred_at,
            definition=definition,
            actor=actor or "system",
            target_definition=target,
        )

    def _stored(self, current: StoredRun | None, t: Transition, cause: Envelope) -> StoredRun:
        run = t.current
        run.revision = (current.run.revision if current else 0) + 1
        outbox = [
            new_event(
                payload,
                producer=PRODUCER,
                run_id=run.id,
                cause=cause,
                event_id=derived_id(cause.event_id, index),
            ).model_dump(mode="json")
            for index, payload in enumerate(t.messages)
        ]
        history = [
            {**event.model_dump(mode="python"), "cause": cause.type, "cause_id": cause.event_id}
            for event in t.events
        ]
        return StoredRun(
            run=run,
            applied=[*(current.applied if current else []), cause.event_id],
            outbox=[*(current.outbox if current else []), *outbox],
            new_history=[*(current.new_history if current else []), *history],
            is_new=current is None or current.is_new,
        )

    async def _publish(self, runs: list[StoredRun]) -> None:
        with_outbox = [s for s in runs if s.outbox]
        if not with_outbox:
            return
        await self.publisher.publish(
            parse_dict(message) for stored in with_outbox for message in stored.outbox
        )
        await self.store.clear_outboxes(with_outbox)


def history_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return list(doc.get("history", []))
