"""Where a burst's CPU goes over time: each process of the stack, sampled every 0.25 s.

Not a test: a measuring tool for docs/benchmarks.md (the spine's tenth part).  It runs one
bench scenario (``make bench``'s test, in a child process), finds the processes it starts
(the services, their stores, Kafka, the mail sink, the harness itself) and samples each
one's CPU from /proc, with the machine's idle time, every 0.25 s.  It prints the rows of
the measured burst (the last stretch in which the services were busy) and what the two
cores did over it: busy, idle, and idle in its first and last quarter (a burst fills and
drains its pipeline there).  Run it alone:

    .venv/bin/python -m tests.bench.timeline [scenario]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PERIOD = 0.25
SERVICES = ("stage_coordinator", "assignment", "notification", "step_runner", "trigger")
SHORT = {"stage_coordinator": "coord", "assignment": "assign", "notification": "notif",
         "step_runner": "step", "trigger": "trig", "harness": "harness", "kafka": "kafka",
         "mail": "mail", "idle": "IDLE"}
TICK = os.sysconf("SC_CLK_TCK")


def processes(bench: int) -> dict[str, int]:
    """The bench's descendants, by what they are."""
    parent: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        parent[int(entry)] = int(stat[1])
        commands[int(entry)] = raw.decode(errors="replace").replace("\0", " ")

    def under_bench(pid: int) -> bool:
        while pid > 1:
            if pid == bench:
                return True
            pid = parent.get(pid, 0)
        return False

    found = {"harness": bench}
    for pid, command in commands.items():
        if pid == bench or not under_bench(pid):
            continue
        for service in SERVICES:
            if f"services.{service}" in command:
                found[service] = pid
        if "--storage-path" in command:  # a SecantusDB: named by its data folder
            folder = command.split("--storage-path ")[1].split()[0].rstrip("/")
            found["db:" + folder.split("/")[-1].removeprefix("mongo-")] = pid
        if "kafka.Kafka" in command:
            found["kafka"] = pid
        if "mail_sink" in command:
            found["mail"] = pid
    return found


def cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_idle() -> float:
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return (int(fields[4]) + int(fields[5])) / TICK


def sample(scenario: str) -> list[dict[str, float]]:
    env = {**os.environ, "BATON_BENCH": scenario, "PYTHONPATH": str(ROOT)}
    with open(ROOT / ".baton" / "timeline-bench.log", "w") as log:
        bench = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-m", "bench", "-s", "-p", "no:cacheprovider"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        rows: list[dict[str, float]] = []
        last: dict[tuple[str, int], float] = {}
        began, idle_before = time.monotonic(), machine_idle()
        while bench.poll() is None:
            time.sleep(PERIOD)
            row = {"t": round(time.monotonic() - began, 2)}
            for name, pid in processes(bench.pid).items():
                now = cpu(pid)
                if now is not None and (name, pid) in last:
                    row[name] = round((now - last[(name, pid)]) / PERIOD, 2)
                if now is not None:
                    last[(name, pid)] = now
            idle_now = machine_idle()
            row["idle"] = round((idle_now - idle_before) / PERIOD, 2)
            idle_before = idle_now
            rows.append(row)
    return rows


def burst(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    """The longest stretch in which the services were busy, pauses of up to a second
    included: the measured burst (the warm-up is a trickle, the stop a blip)."""
    busy = [i for i, row in enumerate(rows) if sum(row.get(s, 0.0) for s in SERVICES) > 0.3]
    stretches: list[tuple[int, int]] = []
    for i in busy:
        if stretches and i - stretches[-1][1] <= 4:
            stretches[-1] = (stretches[-1][0], i)
        else:
            stretches.append((i, i))
    if not stretches:
        return []
    start, end = max(stretches, key=lambda s: s[1] - s[0])
    return rows[start:end + 1]


def report(rows: list[dict[str, float]]) -> str:
    if not rows:
        return "no burst found"
    names = [*sorted({k for row in rows for k in row if k not in ("t", "idle")}), "idle"]
    lines = ["   t " + "".join(f"{SHORT.get(n, n)[:9]:>10}" for n in names)]
    lines += [f"{row['t']:5.2f}" + "".join(f"{row.get(n, 0.0):10.2f}" for n in names)
              for row in rows]
    idle = [row.get("idle", 0.0) for row in rows]
    quarter = max(1, len(rows) // 4)
    lines.append(
        f"{len(rows) * PERIOD:.2f} s; cores idle on average {sum(idle) / len(rows):.2f} of 2"
        f" (first quarter {sum(idle[:quarter]) / quarter:.2f}, middle half"
        f" {sum(idle[quarter:-quarter]) / max(1, len(idle) - 2 * quarter):.2f},"
        f" last quarter {sum(idle[-quarter:]) / quarter:.2f})")
    return "\n".join(lines)


def main(scenario: str = "burst-1k") -> None:
    rows = sample(scenario)
    (ROOT / ".baton" / "timeline.json").write_text(json.dumps(rows))  # every row
    print(report(burst(rows)))


if __name__ == "__main__":
    main(*(sys.argv[1:2] or ["burst-1k"]))
