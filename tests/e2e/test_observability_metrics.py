"""/metrics and /stats against the running stack: a deliberately stuck run is seen, then not.

The five services run on the session's Kafka and MongoDB with the gauges refreshed every
0.3s.  A run waits in an interactive step with ``sla: 1s`` and ``due: 1s``: the
coordinator's gauges must count it stuck and the assignment's count its work item open
and overdue; /stats and `baton stats` must name its stage the bottleneck.  When the item
is completed, every gauge goes back to 0 and the counters and histograms record the run.
"""

from __future__ import annotations

import httpx
import pytest
from e2e.conftest import ADMIN_TOKEN, wait_for
from observability_support import (
    ADMIN,
    complete,
    open_item,
    run_status,
    scrape,
    start_run,
    token_for,
)
from typer.testing import CliRunner

from cli.main import app
from infra.stack import SERVICES, ServiceStack

pytestmark = pytest.mark.e2e

NAME = "obs-metrics"
DEFINITION = f"""
name: {NAME}
stages:
  - name: intake
    steps:
      - {{name: note, action: noop}}
  - name: review
    steps:
      - name: check
        kind: interactive
        title: Check it
        assignee: {{queue: hr}}
        sla: 1s
        due: 1s
"""
STEP = {"orchestration": NAME, "stage": "review", "step": "check", "kind": "interactive"}
CONSUMED = {
    "trigger": ["records.changes"],
    "stage-coordinator": ["commands", "steps.outcomes", "workitems.events"],  # one consumer
    "step-runner": ["steps.dispatch"],
    "assignment": ["workitems.dispatch"],
    "notification": ["workitems.events", "runs.events"],
}


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    return {"BATON_GAUGE_REFRESH_SECONDS": "0.3", "BATON_CONSUMER_LAG_SECONDS": "0.5"}


async def test_a_stuck_run_is_counted_reported_and_cleared(stack: ServiceStack) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        hana = await token_for(client, stack, "hana")
        run_id = await start_run(client, stack, DEFINITION, NAME)
        item = await open_item(client, stack, hana, run_id)

        async def coordinator_sees_it_stuck() -> bool:
            metrics = await scrape(client, stack, "stage-coordinator")
            return metrics.value("baton_steps_stuck", **STEP) == 1

        await wait_for(coordinator_sees_it_stuck, timeout=30)
        metrics = await scrape(client, stack, "stage-coordinator")
        assert metrics.value("baton_steps_in_progress", **STEP) == 1
        oldest = metrics.value("baton_steps_stuck_oldest_age_seconds", **STEP)
        assert oldest is not None and oldest > 1.0
        assert metrics.value("baton_runs_active", orchestration=NAME, stage="review",
                             status="running") == 1

        async def assignment_sees_it_overdue() -> bool:
            metrics = await scrape(client, stack, "assignment")
            return metrics.value("baton_work_items_overdue", assignee_kind="queue",
                                 pool="hr") == 1

        await wait_for(assignment_sees_it_overdue, timeout=30)
        items = await scrape(client, stack, "assignment")
        assert items.value("baton_work_items_open", assignee_kind="queue", pool="hr",
                           status="open") == 1
        age = items.value("baton_work_items_oldest_age_seconds", assignee_kind="queue",
                          pool="hr", status="open")
        assert age is not None and age > 1.0

        # the report names the stage, and the run as the longest waiting
        coordinator = stack.url("stage-coordinator")
        assert (await client.get(f"{coordinator}/stats")).status_code == 401
        # Every run's waiting steps: for operators and admins, not for a person like hana.
        refused = await client.get(f"{coordinator}/stats", params={"since": "1h"}, headers=hana)
        assert refused.status_code == 403, refused.text
        response = await client.get(f"{coordinator}/stats", params={"since": "1h"},
                                    headers=ADMIN)
        assert response.status_code == 200, response.text
        report = response.json()
        ours = next(o for o in report["orchestrations"] if o["orchestration"] == NAME)
        assert ours["bottleneck"]["stage"] == "review"
        assert ours["bottleneck"]["work_in_progress"] == 1
        waiting = ours["longest_waiting"][0]
        assert (waiting["run_id"], waiting["stage"], waiting["step"]) == (run_id, "review",
                                                                          "check")
        intake = next(s for s in ours["stages"] if s["stage"] == "intake")
        assert intake["finished"] == 1 and intake["p50_seconds"] is not None
        bad = await client.get(f"{coordinator}/stats", params={"since": "soon"}, headers=ADMIN)
        assert bad.status_code == 422

        result = CliRunner().invoke(app, ["stats", "-o", NAME], env={
            "BATON_TOKEN": ADMIN_TOKEN, "BATON_COORDINATOR_URL": coordinator})
        assert result.exit_code == 0, result.output
        assert f"bottleneck: {NAME} / stage review: 1 run waiting" in result.stdout
        assert run_id in result.stdout

        # label sets are bounded: never a run id or a user id
        for service in SERVICES:
            labels = (await scrape(client, stack, service)).label_values()
            assert run_id not in labels and "hana" not in labels, service

        await complete(client, stack, hana, item["id"])

        async def completed() -> bool:
            return await run_status(client, stack, run_id) == "completed"

        await wait_for(completed, timeout=30)

        async def coordinator_cleared() -> bool:
            metrics = await scrape(client, stack, "stage-coordinator")
            return (metrics.value("baton_steps_stuck", **STEP) == 0
                    and metrics.value("baton_steps_in_progress", **STEP) == 0
                    and metrics.value("baton_runs_active", orchestration=NAME, stage="review",
                                      status="running") == 0)

        await wait_for(coordinator_cleared, timeout=30)

        async def assignment_cleared() -> bool:
            metrics = await scrape(client, stack, "assignment")
            return (metrics.value("baton_work_items_overdue", assignee_kind="queue",
                                  pool="hr") == 0
                    and metrics.value("baton_work_items_open", assignee_kind="queue",
                                      pool="hr", status="open") == 0)

        await wait_for(assignment_cleared, timeout=30)

        metrics = await scrape(client, stack, "stage-coordinator")
        assert metrics.value("baton_steps_stuck_oldest_age_seconds", **STEP) == 0
        assert metrics.value("baton_runs_started_total", orchestration=NAME) == 1
        assert metrics.value("baton_runs_finished_total", orchestration=NAME,
                             status="completed") == 1
        assert metrics.value("baton_stage_duration_seconds_count", orchestration=NAME,
                             stage="review") == 1
        assert metrics.value("baton_step_duration_seconds_count", **STEP) == 1


async def test_every_service_serves_the_shared_metrics(stack: ServiceStack) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for service, topics in CONSUMED.items():
            async def lag_reported(service: str = service, topics: list[str] = topics) -> bool:
                metrics = await scrape(client, stack, service)
                return all(metrics.value("baton_consumer_lag", service=service, topic=t)
                           is not None for t in topics)

            await wait_for(lag_reported, timeout=30)
            metrics = await scrape(client, stack, service)
            for topic in topics:
                lag = metrics.value("baton_consumer_lag", service=service, topic=topic)
                assert lag is not None and lag >= 0
            consumer_topic = "+".join(topics)
            for reason in ("unparseable", "not handled", "handler failed"):
                assert metrics.value("baton_dead_letters_total", service=service,
                                     topic=consumer_topic, reason=reason) == 0, (service, reason)
            for family in ("baton_messages_consumed_total", "baton_messages_published_total"):
                assert f"# TYPE {family} counter" in metrics.text, (service, family)
        for service in ("stage-coordinator", "assignment"):
            metrics = await scrape(client, stack, service)
            assert metrics.value("baton_gauges_refreshed_timestamp_seconds",
                                 service=service) is not None


REPLICATED = "obs-replicas"
REPLICATED_DEFINITION = f"""
name: {REPLICATED}
stages:
  - name: review
    steps:
      - name: look
        kind: interactive
        title: Look at it
        assignee: {{queue: facilities}}
        sla: 1s
"""


async def test_replicas_report_the_same_global_values_and_survive_one_dying(
    stack: ServiceStack,
) -> None:
    step = {"orchestration": REPLICATED, "stage": "review", "step": "look",
            "kind": "interactive"}
    pool = {"assignee_kind": "queue", "pool": "facilities", "status": "open"}
    extra = ("stage-coordinator#1", "assignment#1")
    for key in extra:
        stack.start_one(key.split("#")[0], replica=1)
    try:
        for key in extra:
            stack.wait_healthy(key, timeout=60)
        async with httpx.AsyncClient(timeout=10) as client:
            await token_for(client, stack, "fatima")  # the directory, for the queue
            run_id = await start_run(client, stack, REPLICATED_DEFINITION, REPLICATED)

            async def every_replica_counts_it_once() -> bool:
                values = []
                for key in ("stage-coordinator", "stage-coordinator#1"):
                    metrics = await scrape(client, stack, key)
                    values.append(metrics.value("baton_steps_stuck", **step))
                for key in ("assignment", "assignment#1"):
                    metrics = await scrape(client, stack, key)
                    values.append(metrics.value("baton_work_items_open", **pool))
                return values == [1, 1, 1, 1]

            # the run's partition is owned by one coordinator replica: the other counts it too
            await wait_for(every_replica_counts_it_once, timeout=30)

            stack.kill_one("stage-coordinator#1")
            stack.kill_one("assignment#1")
            metrics = await scrape(client, stack, "stage-coordinator")
            assert metrics.value("baton_steps_stuck", **step) == 1

            canceled = await client.post(f"{stack.url('stage-coordinator')}/runs/{run_id}/cancel",
                                         json={"reason": "test over"}, headers=ADMIN)
            assert canceled.status_code == 202, canceled.text

            async def gone() -> bool:  # after the rebalance, the survivors see it move on
                coordinator = await scrape(client, stack, "stage-coordinator")
                assignment = await scrape(client, stack, "assignment")
                return (coordinator.value("baton_steps_stuck", **step) == 0
                        and assignment.value("baton_work_items_open", **pool) == 0)

            await wait_for(gone, timeout=60)
    finally:
        for key in extra:
            stack.stop_one(key)
