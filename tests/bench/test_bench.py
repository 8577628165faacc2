"""make bench: the figures for docs/benchmarks.md (not a timed test: speed is reported,
only correctness is asserted, i.e. every run completes).

BATON_BENCH picks scenarios (comma-separated names, default all); results are printed
and appended to .baton/bench-results.jsonl.  BATON_BENCH_ROUNDS=N measures each burst N
times, each followed by its run floor: the table then gives the median share of the run
floor over the rounds (the machine's speed moves by a third within minutes, so one pair
is no verdict).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from bench_harness import Bench, Scenario, floor, table
from infra_figures import broker_start, hop, idle
from run_floor import run_floor

pytestmark = [pytest.mark.bench, pytest.mark.timeout(7200)]  # 10,000 runs take a while

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / ".baton" / "bench-results.jsonl"
SCENARIOS = [
    Scenario("burst-1k", runs=1_000),
    Scenario("steady-5/s", runs=300, rate=5.0),
    Scenario("burst-10k", runs=10_000),
    Scenario("burst-1k-2-replicas", runs=1_000, replicas=2),
    Scenario("burst-1k-1-partition", runs=1_000, partitions=1),
    Scenario("burst-1k-8-partitions", runs=1_000, partitions=8),
]
CHOSEN = [s for s in os.environ.get("BATON_BENCH", "").split(",") if s]
ROUNDS = max(1, int(os.environ.get("BATON_BENCH_ROUNDS", "1")))


SESSION: list[dict[str, Any]] = []


def record(result: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as handle:
        handle.write(json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%S"), **result}) + "\n")
    SESSION.append(result)
    print("\n" + json.dumps(result, indent=1))
    print("\n" + table(SESSION))  # the table so far: the last one printed has every scenario


PICKED = [s for s in SCENARIOS if not CHOSEN or s.name in CHOSEN]
EXTRA = ("broker-start", "idle", "hop", "floor", "run-floor")
FLOORED = not CHOSEN or "run-floor" in CHOSEN
# With the run floor chosen, it is measured again after each burst: a burst's share is of
# the floors on either side of it (bench_harness.bracketing_floors), not of one taken
# minutes earlier in another stretch of the machine's speed.
NAMES = [*(n for n in EXTRA if not CHOSEN or n in CHOSEN),
         *(name for s in PICKED for _ in range(1 if s.rate else ROUNDS)
           for name in (s.name, *([f"run-floor-after-{s.name}"] if FLOORED and not s.rate
                                  else [])))]


@pytest.mark.parametrize("name", NAMES)
async def test_bench(name: str, tmp_path: Path) -> None:
    if name == "broker-start":
        result = broker_start(tmp_path)
        record(result)
        assert result["restart_s"] > 0
        return
    if name == "idle":
        result = idle(tmp_path)
        record(result)
        assert result["cores_total"] > 0
        return
    if name == "hop":
        result = await hop(tmp_path)
        record(result)
        assert result["messages"] > 0
        return
    if name.startswith("run-floor"):
        result = await run_floor(tmp_path)
        record(result if name == "run-floor" else {**result, "after": name.split("-after-")[1]})
        assert result["runs_per_s"] > 0
        return
    if name == "floor":
        result = await floor(tmp_path)
        record({"scenario": "floor", **result})
        assert result["per_s"] > 0
        return
    scenario = next(s for s in PICKED if s.name == name)
    async with Bench(scenario, tmp_path) as bench:
        result = await bench.run(timeout=max(300.0, scenario.runs / 2))
    record(result)
    assert result["lost"] == 0, result
