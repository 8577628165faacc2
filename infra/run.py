"""`make run`: embedded Kafka and MongoDB, the five services, an example run, live logs.

Ctrl-C stops every process this started (children also die with it if it is killed).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path

import httpx

from infra.embedded import STATE_DIR, EmbeddedServers
from infra.stack import ServiceStack

ROOT = Path(__file__).resolve().parent.parent
DEMO_TOKEN = "bt_local_admin"  # local demo only; production sets BATON_ADMIN_TOKEN or issues tokens


def say(text: str) -> None:
    print(f"\033[1m==> {text}\033[0m", flush=True)


def follow(log_dir: Path, stop: threading.Event) -> None:
    """Print the services' log lines as they come, prefixed by nothing: they name themselves."""
    positions: dict[Path, int] = {}
    while not stop.is_set():
        for path in sorted(log_dir.glob("*.log")):
            if path.name in ("kafka.log", "mongo.log"):
                continue
            with path.open("rb") as handle:
                handle.seek(positions.get(path, 0))
                chunk = handle.read()
                positions[path] = handle.tell()
            for line in chunk.decode(errors="replace").splitlines():
                print(line, flush=True)
        time.sleep(0.3)


def demo(stack: ServiceStack) -> None:
    headers = {"Authorization": f"Bearer {DEMO_TOKEN}"}
    trigger = stack.url("trigger")
    coordinator = stack.url("stage-coordinator")
    with httpx.Client(timeout=10) as client:
        for example in ("hello.yaml",):
            response = client.post(f"{trigger}/definitions", headers=headers,
                                   content=(ROOT / "examples" / example).read_bytes())
            say(f"published examples/{example}: {response.status_code} {response.text}")
        response = client.post(f"{trigger}/runs", headers=headers,
                               json={"orchestration": "hello", "inputs": {}})
        run_id = response.json()["run_id"]
        say(f"started run {run_id} of 'hello'")
        deadline = time.monotonic() + 30
        run = {}
        while time.monotonic() < deadline:
            run = client.get(f"{coordinator}/runs/{run_id}", headers=headers).json()
            if run.get("status") in ("completed", "error", "canceled"):
                break
            time.sleep(0.3)
        say(f"run {run_id} is {run.get('status')}; its history:")
        for entry in run.get("history", []):
            what = entry.get("stage") or entry.get("step") or entry.get("status") or ""
            print(f"      {entry['at']}  {entry['kind']:<18} {what}", flush=True)


def main() -> int:
    data_dir = STATE_DIR / "data"
    log_dir = data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("*.log"):
        old.unlink()
    say("starting the embedded Kafka (Tansu) and MongoDB (SecantusDB)")
    servers = EmbeddedServers(data_dir).start()
    say(f"Kafka at {servers.kafka_bootstrap}, MongoDB at {servers.mongodb_uri}")
    env = {**servers.env(), "BATON_ADMIN_TOKEN": DEMO_TOKEN, "BATON_LOG_FORMAT": "text"}
    stack = ServiceStack(env=env, log_dir=log_dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        say("starting trigger, stage-coordinator, step-runner, assignment, notification")
        stack.start(timeout=90)
        for name in stack.names:
            say(f"{name:<18} {stack.url(name)}  (/health, /metrics, /docs)")
        demo(stack)
        (STATE_DIR / "run.json").write_text(json.dumps(
            {"services": {n: stack.url(n) for n in stack.names}, "admin_token": DEMO_TOKEN,
             **servers.env()}, indent=2))
        say("Baton is up. Try: .venv/bin/baton runs list  — Ctrl-C stops everything.")
        threading.Thread(target=follow, args=(log_dir, stop), daemon=True).start()
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        say("stopping")
    finally:
        stop.set()
        stack.stop()
        servers.stop()
        say("all processes stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
