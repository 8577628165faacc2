"""make soak: the benchmark workload at a steady rate for ten minutes; memory and latency
must stay flat.

Every window (30 s) records each service's resident memory and the p50/p99 of "run
started to run completed" for the runs that completed in it.  The figures are printed and
appended to .baton/soak-figures.jsonl.  BATON_SOAK_SECONDS and BATON_SOAK_RATE change the
length and the rate.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from bench.bench_harness import Bench, Scenario, percentile

ROOT = Path(__file__).resolve().parents[2]
SECONDS = float(os.environ.get("BATON_SOAK_SECONDS", "600"))
pytestmark = [pytest.mark.soak, pytest.mark.timeout(int(SECONDS) + 600)]
RATE = float(os.environ.get("BATON_SOAK_RATE", "2"))
WINDOW = 30.0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def test_steady_load_keeps_memory_and_latency_flat(tmp_path: Path) -> None:
    runs = int(SECONDS * RATE)
    scenario = Scenario("soak", runs=runs, rate=RATE)
    windows: list[dict[str, Any]] = []
    async with Bench(scenario, tmp_path) as bench:
        assert bench.stack is not None
        pids = {key: proc.pid for key, proc in bench.stack.procs.items()}

        async def sample() -> None:
            began = time.time()
            seen: set[str] = set()
            while True:
                await asyncio.sleep(WINDOW)
                o = bench.observed
                fresh = [r for r in o.completed if r not in seen and r in o.started_sent]
                seen.update(fresh)
                latency = [(o.completed[r] - o.started_sent[r]) * 1000 for r in fresh]
                windows.append({
                    "t": round(time.time() - began),
                    "completed": len(fresh),
                    "p50_ms": round(percentile(latency, 50), 1),
                    "p99_ms": round(percentile(latency, 99), 1),
                    "rss_mib": {k: round(rss_mib(pid), 1) for k, pid in pids.items()},
                })
                print("soak window:", json.dumps(windows[-1]), flush=True)

        sampler = asyncio.create_task(sample())
        result = await bench.run(timeout=SECONDS + 120)
        sampler.cancel()

    out = ROOT / ".baton" / "soak-figures.jsonl"
    out.parent.mkdir(exist_ok=True)
    with out.open("a") as handle:
        handle.write(json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "rate": RATE,
                                 "seconds": SECONDS, "result": result,
                                 "windows": windows}) + "\n")
    assert result["lost"] == 0, result
    steady = [w for w in windows if w["completed"]][1:]  # the first window warms up
    assert len(steady) >= 3, windows
    first, last = steady[0], steady[-1]
    for service, start in first["rss_mib"].items():
        assert last["rss_mib"][service] <= start * 1.25 + 16, (service, first, last)
    assert last["p50_ms"] <= max(2 * first["p50_ms"], first["p50_ms"] + 50), (first, last)
