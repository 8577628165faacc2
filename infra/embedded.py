"""The embedded servers: genuine Apache Kafka (KRaft) and the MongoDB API (SecantusDB).

    python -m infra.embedded start     # start both, detached; state in .baton/embedded.json
    python -m infra.embedded stop
    python -m infra.embedded status

Tests and ``make run`` use :class:`EmbeddedServers` directly, tied to their own
lifetime so that no server outlives them.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra import processes
from infra.kafka_broker import EmbeddedKafka

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".baton"
SECANTUS_VENV = STATE_DIR / "secantus-venv"


def secantus_binary() -> str:
    explicit = os.environ.get("BATON_SECANTUS_BIN")
    candidate = Path(explicit) if explicit else SECANTUS_VENV / "bin" / "secantusd-py"
    if not candidate.exists():
        raise FileNotFoundError(
            f"SecantusDB is not installed at {candidate}; run `make deps` (it installs "
            "SecantusDB==0.7.0b3 into its own virtual environment)"
        )
    return str(candidate)


# The services that write on every run, each with a SecantusDB of its own in the stack that
# ``make run``, the bench and the chaos tests start; the others share one (decision 25).
OWN_STORES = ("stage-coordinator", "assignment")


@dataclass
class EmbeddedServers:
    """Both servers, on given or free ports, with data under ``data_dir``.

    MongoDB is one SecantusDB that every service shares, plus one of its own for each
    service in ``own_stores``.  A SecantusDB serves its clients in one process behind one
    interpreter lock: one core at most, and concurrent writers wait for each other.  The
    services share no collection, so each may have a server of its own (decision 25).
    """

    data_dir: Path
    kafka_port: int = 0
    mongo_port: int = 0
    tie_to_parent: bool = True
    # SASL/SCRAM users: with any, Kafka's listener needs them and its authorizer is on.
    kafka_users: dict[str, str] = field(default_factory=dict)
    own_stores: tuple[str, ...] = ()
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    kafka: EmbeddedKafka | None = None
    store_ports: dict[str, int] = field(default_factory=dict)  # "mongo-<service>" -> port

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def mongodb_uri(self) -> str:
        """The shared SecantusDB (every service without one of its own)."""
        return _uri(self.mongo_port)

    def store_uri(self, service: str) -> str:
        """The MongoDB ``service`` uses: its own SecantusDB, or the shared one."""
        port = self.store_ports.get(_store(service))
        return _uri(port) if port else self.mongodb_uri

    @property
    def stores(self) -> dict[str, str]:
        """Every SecantusDB, by process name ("mongo" is the shared one), as a URI."""
        return {"mongo": self.mongodb_uri,
                **{name: _uri(port) for name, port in self.store_ports.items()}}

    def start(self) -> EmbeddedServers:
        self.kafka_port = self.kafka_port or processes.free_port()
        self.start_kafka()
        self.start_mongo()
        return self

    def start_kafka(self) -> None:
        """Start (or restart, on the same ports and data) the Kafka broker."""
        controller = self.kafka.controller_port if self.kafka else 0
        self.kafka = EmbeddedKafka(self.data_dir, self.kafka_port, controller,
                                   scram_users=self.kafka_users,
                                   tie_to_parent=self.tie_to_parent).start()
        assert self.kafka.proc is not None
        self.procs["kafka"] = self.kafka.proc

    def wipe_kafka(self) -> None:
        """Delete the stopped broker's log: it comes back knowing nothing (a lost cluster)."""
        if "kafka" in self.procs:
            raise RuntimeError("stop or kill the broker before wiping its data")
        shutil.rmtree(self.data_dir / "kafka", ignore_errors=True)

    def start_mongo(self) -> None:
        """Start (or restart, on the same ports and data) every SecantusDB not running."""
        self.mongo_port = self.mongo_port or processes.free_port()
        for service in self.own_stores:
            self.store_ports.setdefault(_store(service), processes.free_port())
        ports = {"mongo": self.mongo_port, **self.store_ports}
        started = [name for name in ports if name not in self.procs]
        for name in started:
            storage = self.data_dir / name  # "mongo", or "mongo-<service>"
            storage.mkdir(parents=True, exist_ok=True)
            self.procs[name] = processes.spawn(
                [secantus_binary(), "--host", "127.0.0.1", "--port", str(ports[name]),
                 "--storage-path", str(storage), "--log-level", "WARNING", "--standalone"],
                log_path=self.data_dir / "logs" / f"{name}.log",
                tie_to_parent=self.tie_to_parent,
            )
        for name in started:
            processes.wait_until(functools.partial(_mongo_ready, _uri(ports[name])),
                                 timeout=60, what=f"MongoDB (SecantusDB, {name})")

    def kill_mongo(self) -> None:
        """Kill every SecantusDB at once (a MongoDB outage)."""
        for name in [n for n in self.procs if n == "mongo" or n.startswith("mongo-")]:
            self.kill_one(name)

    def stop_one(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            processes.stop(proc, timeout=20.0)

    def kill_one(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            processes.kill(proc)

    def stop(self) -> None:
        """Stop every server at once."""
        procs = list(self.procs.values())
        self.procs.clear()
        processes.stop_all(procs, timeout=20.0)

    def env(self) -> dict[str, str]:
        return {"BATON_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
                "BATON_MONGODB_URI": self.mongodb_uri}

    def service_env(self) -> dict[str, dict[str, str]]:
        """What each service with a SecantusDB of its own sets apart from :meth:`env`: its
        store, and the shared one for the document every service shares (the broker's
        epoch, shared/broker_watch.py)."""
        return {service: {"BATON_MONGODB_URI": self.store_uri(service),
                          "BATON_MONGODB_SHARED_URI": self.mongodb_uri}
                for service in self.own_stores}


def _store(service: str) -> str:
    return f"mongo-{service}"


def _uri(port: int) -> str:
    return f"mongodb://127.0.0.1:{port}/?retryWrites=false&maxIdleTimeMS=120000"


def _mongo_ready(uri: str) -> bool:
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]]
    with MongoClient(uri, serverSelectionTimeoutMS=500) as client:
        client.admin.command("ping")
    return True


def _state_file() -> Path:
    return STATE_DIR / "embedded.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.embedded")
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--kafka-port", type=int,
                        default=int(os.environ.get("BATON_KAFKA_PORT", 0)))
    parser.add_argument("--mongo-port", type=int,
                        default=int(os.environ.get("BATON_MONGODB_PORT", 0)))
    parser.add_argument("--fresh", action="store_true",
                        help="delete the servers' data first (Kafka's log and MongoDB)")
    args = parser.parse_args(argv)
    state = _state_file()
    if args.command == "start":
        data_dir = STATE_DIR / "data"
        if args.fresh:
            shutil.rmtree(data_dir / "mongo", ignore_errors=True)
            shutil.rmtree(data_dir / "kafka", ignore_errors=True)
        servers = EmbeddedServers(data_dir, args.kafka_port, args.mongo_port, tie_to_parent=False)
        servers.start()
        pids = {name: proc.pid for name, proc in servers.procs.items()}
        state.write_text(json.dumps({**servers.env(), "pids": pids}, indent=2))
        print(json.dumps(servers.env(), indent=2))
        return 0
    if not state.exists():
        print("no embedded servers recorded", file=sys.stderr)
        return 0 if args.command == "stop" else 1
    recorded = json.loads(state.read_text())
    if args.command == "status":
        print(json.dumps(recorded, indent=2))
        return 0
    processes.stop_all([int(pid) for pid in recorded["pids"].values()], timeout=20.0)
    state.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
