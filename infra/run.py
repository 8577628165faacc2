"""`make run`: embedded Kafka and MongoDB, the five services, an example run, live logs.

Ctrl-C stops every process this started (children also die with it if it is killed).
The data of an earlier `make run` (under .baton/data) is kept and said so;
`make run FRESH=1` (``python -m infra.run --fresh``) starts from nothing.
"""

from __future__ import annotations

import argparse
import email
import json
import shutil
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiosmtpd.controller import Controller

from infra import processes
from infra.embedded import OWN_STORES, STATE_DIR, EmbeddedServers
from infra.kafka_broker import kafka_version
from infra.stack import ServiceStack

ROOT = Path(__file__).resolve().parent.parent
DEMO_TOKEN = "bt_local_admin"  # the local demo's; production sets BATON_ADMIN_TOKEN


def say(text: str) -> None:
    print(f"\033[1m==> {text}\033[0m", flush=True)


QUIET = ("Received", "Processed", "callback for Task")  # per-message broker chatter


def follow(log_dir: Path, stop: threading.Event) -> None:
    """Print the services' log lines as they come (they name their service), from now on."""
    positions = {path: path.stat().st_size for path in log_dir.glob("*.log")}
    while not stop.is_set():
        for path in sorted(log_dir.glob("*.log")):
            if path.name in ("kafka.log", "mongo.log"):
                continue
            with path.open("rb") as handle:
                handle.seek(positions.get(path, 0))
                chunk = handle.read()
                positions[path] = handle.tell()
            for line in chunk.decode(errors="replace").splitlines():
                if not any(word in line for word in QUIET):
                    print(line, flush=True)
        time.sleep(0.3)


class Inbox:
    """A local SMTP server and webhook receiver standing in for mail, chat and payroll.

    What arrives is printed, so a newcomer sees the notifications people would get.
    """

    def __init__(self) -> None:
        self.smtp_port = processes.free_port()
        self.smtp = Controller(self, hostname="127.0.0.1", port=self.smtp_port)
        inbox = self

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                inbox.webhook(self.path, self.rfile.read(length))
                body = json.dumps({"ok": True, "id": f"ext-{int(time.time() * 1000)}"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.started = False

    def start(self) -> Inbox:
        self.smtp.start()
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.started = True
        return self

    def stop(self) -> None:
        if self.started:  # not when stopped while the servers were starting
            self.smtp.stop()
            self.http.shutdown()
        self.http.server_close()

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content)
        say(f"mail to {', '.join(envelope.rcpt_tos)}: {message['Subject']}")
        return "250 Message accepted for delivery"

    def webhook(self, path: str, raw: bytes) -> None:
        say(webhook_line(path, raw))


def webhook_line(path: str, raw: bytes) -> str:
    """What a webhook call shows: a chat message names its channel (the person's handle)."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = raw.decode(errors="replace")
    text = body.get("text", body) if isinstance(body, dict) else body
    text = " / ".join(line for line in str(text).splitlines() if line.strip())[:160]
    if isinstance(body, dict) and body.get("channel"):
        return f"chat to {body['channel']}: {text}"
    return f"webhook {path}: {text}"


def demo(stack: ServiceStack, inbox: Inbox) -> None:
    admin = {"Authorization": f"Bearer {DEMO_TOKEN}"}
    trigger, guide = stack.url("trigger"), stack.url("assignment")
    with httpx.Client(timeout=10) as client:
        directory = yaml.safe_load((ROOT / "examples" / "directory.yaml").read_text())
        client.put(f"{guide}/directory", json=directory, headers=admin).raise_for_status()
        say("loaded examples/directory.yaml (the people, groups and queues)")
        for example in ("hello", "onboarding", "quote_approval", "case_escalation"):
            response = client.post(f"{trigger}/definitions", headers=admin,
                                   content=(ROOT / "examples" / f"{example}.yaml").read_bytes())
            answer = response.json()
            say(f"published examples/{example}.yaml: {answer.get('name')} "
                f"v{answer.get('version')}" if response.status_code == 201
                else f"examples/{example}.yaml: {response.status_code} {response.text}")

        run_id = start(client, trigger, admin, {"orchestration": "hello"})
        run = wait_for_run(client, stack, admin, run_id, ("completed", "error", "canceled"))
        say(f"run {run_id} of 'hello' is {run.get('status')}; its history:")
        for entry in run.get("history", []):
            what = entry.get("stage") or entry.get("step") or entry.get("status") or ""
            print(f"      {entry['at']}  {entry['kind']:<18} {what}", flush=True)

        tokens = {user: client.post(f"{guide}/tokens", json={"user_id": user},
                                    headers=admin).json()["token"]
                  for user in ("hana", "ivan", "fatima", "irene")}
        run_id, stage = onboarding_run(client, trigger, stack.url("stage-coordinator"), admin,
                                       inbox.url)
        if stage == "hr":
            hana = {"Authorization": f"Bearer {tokens['hana']}"}
            item = wait_for_item(client, guide, hana, run_id)
            say(f"Hana completes the HR form ({item['id']}) through the Work Guide API")
            client.post(f"{guide}/work/{item['id']}/complete", headers=hana, json={"values": {
                "start_date": "2027-01-04", "laptop_model": "developer", "desk_needed": True,
            }}).raise_for_status()
            wait_for_run(client, stack, admin, run_id, ("running",), stage="provisioning")
            say("the run moved on to provisioning: IT, facilities and payroll work in parallel.")
    print(next_steps(guide, tokens, run_id), flush=True)


ADA = "Employee:e1001"  # Ada Novak's record: one onboarding run at a time (examples/)


def onboarding_run(client: httpx.Client, trigger: str, coordinator: str,
                   admin: dict[str, str], inbox_url: str) -> tuple[str, str]:
    """Ada Novak's onboarding run and its stage: the one an earlier `make run` left open
    on the kept data (her record allows one at a time, so a second would be refused), or
    a new one."""
    found = client.get(f"{coordinator}/runs", headers=admin, params={
        "orchestration": "employee-onboarding", "record_key": ADA})
    found.raise_for_status()
    open_runs = [r for r in found.json() if r.get("status") in ("running", "suspended", "error")]
    if open_runs:
        run = open_runs[0]
        say(f"Ada Novak's onboarding run {run['id']}, from an earlier `make run`, is still "
            f"open ({run['status']}, stage {run.get('stage')}): going on with it "
            "(`make run FRESH=1` starts over)")
        return str(run["id"]), str(run.get("stage"))
    run_id = start(client, trigger, admin, {
        "orchestration": "employee-onboarding",
        "inputs": {"payroll_url": f"{inbox_url}/payroll",
                   "welcome_webhook_url": f"{inbox_url}/chat/welcome"},
        "record": {"object_type": "Employee", "record_id": "e1001",
                   "fields": {"employee_id": "e1001", "name": "Ada Novak",
                              "email": "ada.novak@example.com", "department": "R&D"}},
    })
    say(f"started onboarding run {run_id} for Ada Novak; the HR form waits in the hr queue")
    return run_id, "hr"


def sign_in_link(guide: str, token: str) -> str:
    """A link that signs a browser in (the token stays in the fragment: see signin.js)."""
    return f"{guide}/ui/login#token={token}"


def next_steps(guide: str, tokens: dict[str, str], run_id: str) -> str:
    """What to do next, as each of the people the onboarding run now waits for."""
    return "\n".join([
        f"\033[1m==> The Work Guide: {guide}/ui\033[0m",
        "  Open it signed in as Ivan (IT), who has the laptop to prepare:",
        f"      {sign_in_link(guide, tokens['ivan'])}",
        "  or act as Ivan with the CLI:",
        f"      export BATON_TOKEN={tokens['ivan']}",
        "      .venv/bin/baton work list",
        "      .venv/bin/baton work complete ITEM_ID --field serial_number=SN-4471",
        "  Then Fatima (facilities) prepares the desk:",
        f"      {sign_in_link(guide, tokens['fatima'])}",
        "  and Irene, Ada's manager, approves (or rejects: the run goes back to HR):",
        f"      {sign_in_link(guide, tokens['irene'])}",
        f"  Follow the run: {guide}/ui/runs/{run_id}  or  .venv/bin/baton runs show {run_id}",
    ])


def earlier_state(data_dir: Path) -> list[str]:
    """What an earlier `make run` left under ``data_dir`` (its logs aside)."""
    if not data_dir.exists():
        return []
    return sorted(p.name for p in data_dir.iterdir() if p.name != "logs" and (
        p.is_file() or any(p.iterdir())))


def clear_state(data_dir: Path) -> None:
    for path in data_dir.iterdir() if data_dir.exists() else ():
        if path.name == "logs":
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def announce_state(data_dir: Path, fresh: bool) -> bool:
    """Say what the run starts on, clearing it first when ``fresh``.

    False (nothing cleared) when servers started by ``python -m infra.embedded start`` may
    still be using the data.
    """
    left = earlier_state(data_dir)
    if fresh and left and (STATE_DIR / "embedded.json").exists():
        say("embedded servers started by `python -m infra.embedded start` use .baton/data: "
            "stop them first (make stop), then make run FRESH=1")
        return False
    if fresh and left:
        clear_state(data_dir)
        say("a fresh start: the data of the earlier make run is deleted")
    elif left:
        say("starting on the data of an earlier make run (.baton/data): its runs and open "
            "work items are still there, and the examples are published again as new "
            "versions. For a clean start: make run FRESH=1 (or make clean)")
    return True


def start(client: httpx.Client, trigger: str, admin: dict[str, str], body: dict[str, Any]) -> str:
    response = client.post(f"{trigger}/runs", headers=admin, json=body)
    response.raise_for_status()
    return str(response.json()["run_id"])


def wait_for_run(client: httpx.Client, stack: ServiceStack, admin: dict[str, str], run_id: str,
                 statuses: tuple[str, ...], stage: str | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        answer = client.get(f"{stack.url('stage-coordinator')}/runs/{run_id}", headers=admin)
        run = answer.json() if answer.status_code == 200 else {}
        if run.get("status") in statuses and (stage is None or run.get("stage") == stage):
            break
        time.sleep(0.3)
    return run


def wait_for_item(client: httpx.Client, guide: str, who: dict[str, str],
                  run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        items = [i for i in client.get(f"{guide}/work", headers=who).json()
                 if i["run_id"] == run_id]
        if items:
            return dict(items[0])
        time.sleep(0.3)
    raise RuntimeError(f"no work item appeared for run {run_id}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.run")
    parser.add_argument("--fresh", action="store_true",
                        help="delete the data of an earlier run first (make run FRESH=1)")
    args = parser.parse_args(argv)
    data_dir = STATE_DIR / "data"
    if not announce_state(data_dir, args.fresh):
        return 1
    log_dir = data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("*.log"):
        old.unlink()
    servers, inbox = EmbeddedServers(data_dir, own_stores=OWN_STORES), Inbox()
    stack = ServiceStack(env={}, log_dir=log_dir)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGHUP):  # as Ctrl-C: a kill, a closed terminal
        signal.signal(sig, _interrupt)
    try:
        say("starting the embedded Apache Kafka (KRaft) and MongoDB (SecantusDB)")
        servers.start()
        say(f"Apache Kafka {kafka_version()} at {servers.kafka_bootstrap}, "
            f"MongoDB (SecantusDB) at {servers.mongodb_uri}; "
            + "; ".join(f"{s}'s own at {servers.store_uri(s)}" for s in OWN_STORES))
        inbox.start()
        say(f"a local mail server (port {inbox.smtp_port}) and webhook receiver ({inbox.url})")
        stack.env = services_env(servers, inbox)
        stack.service_env = servers.service_env()
        say("starting trigger, stage-coordinator, step-runner, assignment, notification")
        stack.start(timeout=90)
        for name in stack.names:
            say(f"{name:<18} {stack.url(name)}  (/health, /metrics, /docs)")
        demo(stack, inbox)
        (STATE_DIR / "run.json").write_text(json.dumps(
            {"services": {n: stack.url(n) for n in stack.names}, "admin_token": DEMO_TOKEN,
             **servers.env()}, indent=2))
        say(f"Baton is up. The Work Guide: {stack.url('assignment')}/ui (sign-in links "
            "above). Try: .venv/bin/baton runs list  — Ctrl-C stops everything.")
        threading.Thread(target=follow, args=(log_dir, stop), daemon=True).start()
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        say("stopping: the services, then Kafka and MongoDB")
    finally:
        stop.set()
        stop_everything(stack, servers, inbox)
        say("all processes stopped")
    return 0


def services_env(servers: EmbeddedServers, inbox: Inbox) -> dict[str, str]:
    return {**servers.env(), "BATON_ADMIN_TOKEN": DEMO_TOKEN, "BATON_LOG_FORMAT": "text",
            "BATON_SMTP_HOST": "127.0.0.1", "BATON_SMTP_PORT": str(inbox.smtp_port),
            "BATON_CHAT_WEBHOOK_URL": f"{inbox.url}/chat",
            "BATON_OPERATORS": "dana=dana@example.com",
            # The demo's payroll and welcome webhooks are the local Inbox: http steps may
            # reach it only because it is allowlisted (internal addresses are refused).
            "BATON_OUTBOUND_ALLOW": "127.0.0.1/32"}


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def stop_everything(stack: ServiceStack, servers: EmbeddedServers, inbox: Inbox) -> None:
    """Stop the services first, while the servers they close their clients on are up (each
    then stops in well under a second), then both servers.

    A second Ctrl-C meanwhile only says so: cutting this short would leave the children to
    stop by themselves, all at once, when this process is gone.
    """
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: say("still stopping"))
    stack.stop()
    servers.stop()
    inbox.stop()


if __name__ == "__main__":
    sys.exit(main())
