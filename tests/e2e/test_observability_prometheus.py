"""A real Prometheus (Debian's package) scrapes the running stack and evaluates the real rules.

The stack runs with a 2s stuck threshold and gauges refreshed every 0.5s.  Prometheus gets
the scrape configuration for the stack's real ports (infra/observability.py), scrapes and
evaluates every second, and loads infra/prometheus/rules/baton.rules.yml with only the
``for:`` of BatonStuckSteps shortened to 1s (the expressions are the real ones).

A run waits in an interactive step nobody completes: BatonStuckSteps must fire for it, and
stop firing once the work item is completed through the Work Guide API.  Every dashboard
query must be valid PromQL for this Prometheus.

Not in the default suite (it needs apt's prometheus): `make observability`.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from e2e.conftest import ROOT, wait_for
from observability_support import complete, open_item, run_status, start_run, token_for

from infra import processes
from infra.observability import load_rules, prometheus_config, with_for, write_yaml
from infra.stack import SERVICES, ServiceStack

pytestmark = [pytest.mark.e2e, pytest.mark.observability]

NAME = "obs-prometheus"
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
        title: Check it (nobody will, until the test does)
        assignee: {{queue: hr}}
"""
DASHBOARD = ROOT / "infra" / "grafana" / "baton-dashboard.json"


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    return {"BATON_STUCK_AFTER_SECONDS": "2", "BATON_STUCK_HUMAN_AFTER_SECONDS": "2",
            "BATON_GAUGE_REFRESH_SECONDS": "0.5", "BATON_CONSUMER_LAG_SECONDS": "1"}


@pytest.fixture(scope="module")
def prometheus(stack: ServiceStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed: `make observability` installs it "
                    "(apt-get install -y prometheus)")
    workdir = tmp_path_factory.mktemp("prometheus")
    rules = write_yaml(workdir / "baton.rules.yml",
                       with_for(load_rules(), {"BatonStuckSteps": "1s"}))
    config = prometheus_config(stack.ports, rule_files=[str(rules)], scrape_interval="1s",
                               evaluation_interval="1s")
    config_file = write_yaml(workdir / "prometheus.yml", config)
    port = processes.free_port()
    proc = processes.spawn(
        [binary, f"--config.file={config_file}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        log_path=workdir / "prometheus.log",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        processes.wait_until(lambda: httpx.get(f"{url}/-/ready", timeout=1).status_code == 200,
                             timeout=30, what=f"Prometheus (log: {workdir / 'prometheus.log'})")
        yield url
    finally:
        processes.stop(proc)


async def query(client: httpx.AsyncClient, url: str, promql: str) -> list[dict[str, Any]]:
    response = await client.get(f"{url}/api/v1/query", params={"query": promql})
    assert response.status_code == 200, (promql, response.text)
    body = response.json()
    assert body["status"] == "success", (promql, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def stuck_alerts(client: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
    response = await client.get(f"{url}/api/v1/alerts")
    assert response.status_code == 200, response.text
    return [a for a in response.json()["data"]["alerts"]
            if a["labels"].get("alertname") == "BatonStuckSteps"
            and a["labels"].get("orchestration") == NAME]


async def test_the_stuck_step_alert_fires_and_clears(stack: ServiceStack, prometheus: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        async def all_up() -> bool:
            up = await query(client, prometheus, 'up{job=~"baton-.+"}')
            return len(up) == len(SERVICES) and all(r["value"][1] == "1" for r in up)

        await wait_for(all_up, timeout=60)

        hana = await token_for(client, stack, "hana")
        run_id = await start_run(client, stack, DEFINITION, NAME)
        item = await open_item(client, stack, hana, run_id)
        started = time.monotonic()

        async def firing() -> list[dict[str, Any]]:
            return [a for a in await stuck_alerts(client, prometheus) if a["state"] == "firing"]

        alerts = await wait_for(firing, timeout=60, interval=0.5)
        fired_after = time.monotonic() - started
        assert len(alerts) == 1, alerts
        labels = alerts[0]["labels"]
        assert (labels["stage"], labels["step"], labels["kind"]) == ("review", "check",
                                                                     "interactive")
        assert labels["severity"] == "ticket"  # a person's step: not a page
        assert "instance" not in labels  # max() over the replicas
        assert alerts[0]["annotations"]["summary"] == (
            f"1 interactive steps stuck at {NAME} / review / check")
        assert fired_after > 2.0  # not before the 2s threshold had passed
        assert await run_status(client, stack, run_id) == "running"

        others = await client.get(f"{prometheus}/api/v1/alerts")
        names = {a["labels"]["alertname"] for a in others.json()["data"]["alerts"]}
        assert "BatonServiceDown" not in names and "BatonDeadLettersGrowing" not in names

        await complete(client, stack, hana, item["id"])

        async def completed() -> bool:
            return await run_status(client, stack, run_id) == "completed"

        await wait_for(completed, timeout=30)

        async def cleared() -> bool:
            return not await stuck_alerts(client, prometheus)

        await wait_for(cleared, timeout=60, interval=0.5)
        stuck_now = await query(client, prometheus,
                                f'max(baton_steps_stuck{{orchestration="{NAME}"}})')
        assert stuck_now and stuck_now[0]["value"][1] == "0"


async def test_every_dashboard_query_is_valid_promql(prometheus: str) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(expressions) >= 20
    async with httpx.AsyncClient(timeout=10) as client:
        for expr in expressions:
            await query(client, prometheus, re.sub(r"\$__\w+", "5m", expr))
        # the stack's own series are there to draw
        for expr in ('max by (orchestration, stage, status) (baton_runs_active)',
                     'sum by (service, topic) (baton_consumer_lag)', 'up{job=~"baton-.+"}'):
            async def has_data(expr: str = expr) -> bool:
                return bool(await query(client, prometheus, expr))
            await wait_for(has_data, timeout=30)
