"""The Prometheus rules, the scrape configuration, the dashboard and docs/operations.md agree
with what the services expose (no Prometheus needed; `make observability` runs promtool).

Each service is built as its process builds it (no server is contacted) and its registry
lists the metric families it serves.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts import new_event
from contracts.events.records import RecordChanged
from infra.observability import DEFAULT_PORTS, load_rules, prometheus_config, with_for
from services.assignment.__main__ import DEFAULT_PORT as ASSIGNMENT_PORT
from services.assignment.__main__ import build as build_assignment
from services.notification.__main__ import DEFAULT_PORT as NOTIFICATION_PORT
from services.notification.__main__ import build as build_notification
from services.stage_coordinator.__main__ import DEFAULT_PORT as COORDINATOR_PORT
from services.stage_coordinator.__main__ import build as build_coordinator
from services.step_runner.__main__ import DEFAULT_PORT as STEP_RUNNER_PORT
from services.step_runner.__main__ import build as build_step_runner
from services.trigger.__main__ import DEFAULT_PORT as TRIGGER_PORT
from services.trigger.__main__ import build as build_trigger
from shared.logs import JsonFormatter, message_context
from shared.messaging import _shared_ids

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "infra" / "prometheus"
DASHBOARD = json.loads((ROOT / "infra" / "grafana" / "baton-dashboard.json").read_text())
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()
BUILDERS: dict[str, Callable[[], Any]] = {
    "trigger": build_trigger, "stage-coordinator": build_coordinator,
    "step-runner": build_step_runner, "assignment": build_assignment,
    "notification": build_notification,
}
REQUIRED_ALERTS = {"BatonStuckSteps", "BatonRunErrorRate", "BatonDeadLettersGrowing",
                   "BatonConsumerLag", "BatonOverdueWorkItems", "BatonServiceDown"}
GLOBAL_GAUGES = ("baton_runs_active", "baton_steps_in_progress", "baton_steps_stuck",
                 "baton_steps_stuck_oldest_age_seconds", "baton_work_items_open",
                 "baton_work_items_oldest_age_seconds", "baton_work_items_overdue",
                 "baton_outbox_backlog")
METRIC = re.compile(r"\b((?:baton|faststream)_[a-z0-9_]+)")


@pytest.fixture(scope="module")
def families() -> dict[str, dict[str, tuple[str, tuple[str, ...]]]]:
    """Per service: family name -> (type, sample names)."""
    found: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {}
    for service, build in BUILDERS.items():
        runtime = build()
        found[service] = {}
        for family in runtime.registry.collect():
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
                        "summary": ("_count", "_sum")}.get(family.type, ("",))
            found[service][family.name] = (family.type,
                                           tuple(family.name + s for s in suffixes))
    return found


def exposed(families: dict[str, dict[str, tuple[str, tuple[str, ...]]]]) -> set[str]:
    return {name for per in families.values() for _, names in per.values() for name in names}


def rule_expressions() -> list[tuple[str, str]]:
    return [(r["alert"], r["expr"]) for g in load_rules()["groups"] for r in g["rules"]]


def dashboard_expressions() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in DASHBOARD["panels"] for t in p.get("targets", [])]


def test_rules_and_dashboard_use_only_metrics_the_services_serve(families: Any) -> None:
    served = exposed(families)
    for where, expr in rule_expressions() + dashboard_expressions():
        for name in METRIC.findall(expr):
            assert name in served, f"{where}: {name} is served by no service"


def test_the_new_gauges_are_served_by_their_services(families: Any) -> None:
    coordinator, assignment = families["stage-coordinator"], families["assignment"]
    for name in ("baton_runs_active", "baton_steps_in_progress", "baton_steps_stuck",
                 "baton_steps_stuck_oldest_age_seconds"):
        assert coordinator[name][0] == "gauge"
    for name in ("baton_work_items_open", "baton_work_items_oldest_age_seconds",
                 "baton_work_items_overdue"):
        assert assignment[name][0] == "gauge"
    for service, per in families.items():
        assert "baton_consumer_lag" in per and "baton_dead_letters" in per, service
        # What a service took and sent is counted by Baton itself, not by FastStream's
        # middleware: no message passes through FastStream's pipelines (decision 28).
        assert "baton_messages_consumed" in per and "baton_messages_published" in per, service


def test_global_gauges_are_aggregated_with_max_never_sum() -> None:
    for where, expr in rule_expressions() + dashboard_expressions():
        for name in GLOBAL_GAUGES:
            for match in re.finditer(rf"\b{name}\b", expr):
                before = expr[:match.start()]
                assert re.search(r"max by \([^)]*\) \($", before), (where, name, expr)


def test_every_alert_of_the_issue_exists_with_a_runbook_section() -> None:
    rules = [r for g in load_rules()["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} >= REQUIRED_ALERTS
    headings = set(re.findall(r"^### (\w+)$", OPERATIONS, flags=re.MULTILINE))
    for rule in rules:
        assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
        assert rule["annotations"]["runbook"] == f"docs/operations.md#{rule['alert'].lower()}"
        assert rule["alert"] in headings, f"docs/operations.md has no section {rule['alert']}"


def test_every_metric_is_documented(families: Any) -> None:
    for per in families.values():
        for name, (kind, samples) in per.items():
            if name.startswith("faststream_"):
                continue
            documented = name in OPERATIONS or samples[0] in OPERATIONS
            assert documented, f"{name} ({kind}) is not in docs/operations.md"


def test_the_checked_in_scrape_configuration_is_the_generated_one() -> None:
    assert DEFAULT_PORTS == {"trigger": TRIGGER_PORT, "stage-coordinator": COORDINATOR_PORT,
                             "step-runner": STEP_RUNNER_PORT, "assignment": ASSIGNMENT_PORT,
                             "notification": NOTIFICATION_PORT}
    checked_in = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    generated = prometheus_config(DEFAULT_PORTS, rule_files=["rules/*.yml"])
    assert checked_in == generated
    replicas = prometheus_config({"assignment": 1, "assignment#1": 2}, rule_files=[])
    assert replicas["scrape_configs"] == [{"job_name": "baton-assignment", "static_configs": [
        {"targets": ["127.0.0.1:1", "127.0.0.1:2"]}]}]


def test_the_test_copy_of_the_rules_changes_only_the_for_duration() -> None:
    rules = load_rules()
    fast = with_for(rules, {"BatonStuckSteps": "1s"})
    pairs = zip((r for g in rules["groups"] for r in g["rules"]),
                (r for g in fast["groups"] for r in g["rules"]), strict=True)
    for original, copy in pairs:
        assert copy["expr"] == original["expr"]
        expected = "1s" if original["alert"] == "BatonStuckSteps" else original.get("for")
        assert copy.get("for") == expected
    assert load_rules() == rules  # the original is untouched


def test_the_dashboard_is_well_formed() -> None:
    panels = DASHBOARD["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    occupied: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"])
                 for dy in range(pos["h"])}
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel
            assert panel["datasource"]["uid"] == "${datasource}"
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("runs", "stage duration", "stuck", "work item", "service"):
        assert topic in titles, topic


def test_logs_carry_the_run_only_when_the_batch_has_one() -> None:
    def envelope(run_id: str) -> Any:
        return new_event(RecordChanged(object_type="T", record_id="1", change="created"),
                         producer="test", run_id=run_id)

    one, same, other = envelope("run-a"), envelope("run-a"), envelope("run-b")
    assert _shared_ids([one]) == ("run-a", one.correlation_id)
    assert _shared_ids([one, same])[0] == "run-a"
    assert _shared_ids([one, other]) == (None, None)
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "hello", None, None)
    with message_context(*_shared_ids([one])):
        line = json.loads(JsonFormatter("svc").format(record))
    assert line["run_id"] == "run-a" and line["correlation_id"] == one.correlation_id
