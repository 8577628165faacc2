"""The stage-coordinator process: python -m services.stage_coordinator"""

from __future__ import annotations

from datetime import timedelta

from contracts.topics import COMMANDS, STEPS_OUTCOMES, WORKITEMS_EVENTS
from services.stage_coordinator.api import runs_router
from services.stage_coordinator.gauges import RunGauges, StuckPolicy
from services.stage_coordinator.handler import (
    WORK_ITEM_TYPES,
    CoordinatorHandler,
    from_work_items,
    known_holders,
)
from services.stage_coordinator.history import INDEXES as HISTORY_INDEXES
from services.stage_coordinator.jobs import Reconciler, TimerFirer
from services.stage_coordinator.metrics import CoordinatorMetrics
from services.stage_coordinator.stats_api import stats_router
from services.stage_coordinator.store import INDEXES, RunStore
from shared.access import follow_access
from shared.definitions.catalog import follow_definitions
from shared.messaging import Intake
from shared.runtime import Runtime
from shared.settings import ServiceSettings

DEFAULT_PORT = 8102


class CoordinatorSettings(ServiceSettings):
    service_name: str = "stage-coordinator"
    run_cache_size: int = 20_000
    stuck_after_seconds: float = 3600.0  # a background step without an sla is stuck after
    stuck_human_after_seconds: float = 259_200.0  # an interactive/approval step: 3 days


def build(settings: CoordinatorSettings | None = None) -> Runtime:
    settings = settings or CoordinatorSettings()
    rt = Runtime(settings, title="Baton stage-coordinator", default_port=DEFAULT_PORT)
    store = RunStore(rt.db, rt.publisher, cache_size=settings.run_cache_size,
                     mark_delay=settings.outbox_mark_seconds,
                     sweep_age=timedelta(seconds=settings.outbox_sweep_seconds),
                     backlog=rt.metrics.outbox_backlog.labels(rt.metrics.service))
    definitions = follow_definitions(rt)  # the trigger's definitions topic, in memory
    handler = CoordinatorHandler(
        store, definitions, rt.publisher, CoordinatorMetrics(rt.registry)
    )
    # One consumer, one batch loop (decision 20): a batch holds all of a run's messages.
    # On commands and steps.outcomes every message is the coordinator's, a run's or
    # dead-lettered; workitems.events is assignment's: the interactive steps' outcomes and
    # who holds the run's work items (who may see the run: core/participants.py) are taken,
    # the rest passed over, and so is a holder event whose holders the cached run knows
    # (decision 40).  That topic was read by a group of its own until decision 20:
    # this group starts where that one had got to.  All three are keyed by run id: with
    # replicas, one replica holds partition p of each, so one holds all of a run's messages.
    rt.consume((COMMANDS, STEPS_OUTCOMES, WORKITEMS_EVENTS), handler,
               accepts=lambda e: bool(e.run_id),
               intakes={WORKITEMS_EVENTS: Intake(types=WORK_ITEM_TYPES, adapt=from_work_items,
                                                 passes_over=known_holders(store.cache))},
               takes_over={WORKITEMS_EVENTS: f"{rt.name}-participants"}, co_partitioned=True)
    rt.add_indexes([*INDEXES, *HISTORY_INDEXES])
    rt.on_start.append(store.migrate)  # old indexes dropped, keys back-filled (decision 37)
    # Woken by the store when a save makes a timer due sooner than the firer planned.
    rt.when_due(TimerFirer(store.runs, rt.publisher, timers_index=store.timers_index),
                store.timers, "timers")
    rt.on_stop.append(store.finished)  # the last save's messages go out before the stop
    rt.on_broker_reset.append(store.forget_all)  # before anything is read again
    rt.on_broker_reset.append(store.timers_index.restore)  # a server that lost it: again
    rt.on_broker_reset.append(store.active_key_index.restore)
    rt.on_broker_reset.append(Reconciler(store.runs, rt.publisher, store.outboxes, store.timers,
                                         timers_index=store.timers_index))
    # A published outbox costs no write: the mark says how far they went out (decision 16).
    rt.every(0, store.outboxes.mark_when_published, "outbox marks")
    rt.when_due(store.outboxes.sweep_when_due, store.outboxes.sweeps, "outbox sweep")
    authenticator = follow_access(rt)
    rt.http.include_router(runs_router(store.runs, store.history, rt.publisher, authenticator))
    rt.http.include_router(stats_router(store.runs, store.history, authenticator))
    policy = StuckPolicy(timedelta(seconds=settings.stuck_after_seconds),
                         timedelta(seconds=settings.stuck_human_after_seconds))
    gauges = RunGauges(store.runs, definitions, rt.registry, rt.name, policy)
    rt.every(settings.gauge_refresh_seconds, gauges, "run gauges")
    return rt


if __name__ == "__main__":
    build().serve()
