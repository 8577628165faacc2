"""Prometheus configuration for Baton, generated: the stack's real ports, test timings.

``infra/prometheus/prometheus.yml`` is the configuration for the default ports; this
module builds the same configuration for any ports (the tests' stack binds free ones),
and a copy of the alert rules with shorter ``for:`` durations for tests that must see an
alert fire within seconds.  The rule expressions are never changed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "infra" / "prometheus"
RULES = PROMETHEUS_DIR / "rules" / "baton.rules.yml"
DEFAULT_PORTS = {"trigger": 8101, "stage-coordinator": 8102, "step-runner": 8103,
                 "assignment": 8104, "notification": 8105}


def scrape_configs(ports: Mapping[str, int], host: str = "127.0.0.1") -> list[dict[str, Any]]:
    """One job per service, named baton-<service>: replicas (``name#1``) join its targets."""
    jobs: dict[str, list[str]] = {}
    for key, port in ports.items():
        service = key.split("#", 1)[0]
        jobs.setdefault(service, []).append(f"{host}:{port}")
    return [{"job_name": f"baton-{service}", "static_configs": [{"targets": targets}]}
            for service, targets in jobs.items()]


def prometheus_config(
    ports: Mapping[str, int],
    *,
    rule_files: list[str],
    scrape_interval: str = "15s",
    evaluation_interval: str = "15s",
) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
        "rule_files": rule_files,
        "scrape_configs": scrape_configs(ports),
    }


def load_rules(path: Path = RULES) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def with_for(rules: Mapping[str, Any], durations: Mapping[str, str]) -> dict[str, Any]:
    """A copy of the rules with the ``for:`` of the named alerts replaced (expressions kept)."""
    changed = copy.deepcopy(dict(rules))
    for group in changed["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") in durations:
                rule["for"] = durations[rule["alert"]]
    return changed


def write_yaml(path: Path, document: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(document), sort_keys=False))
    return path
