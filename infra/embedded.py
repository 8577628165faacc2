"""The embedded servers: genuine Apache Kafka (KRaft) and the MongoDB API (SecantusDB).

    python -m infra.embedded start     # start both, detached; state in .baton/embedded.json
    python -m infra.embedded stop
    python -m infra.embedded status

Tests and ``make run`` use :class:`EmbeddedServers` directly, tied to their own
lifetime so that no server outlives them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass
class EmbeddedServers:
    """Both servers, on given or free ports, with data under ``data_dir``."""

    data_dir: Path
    kafka_port: int = 0
    mongo_port: int = 0
    tie_to_parent: bool = True
    # SASL/SCRAM users: with any, Kafka's listener needs them and its authorizer is on.
    kafka_users: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    kafka: EmbeddedKafka | None = None

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def mongodb_uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.mongo_port}/?retryWrites=false&maxIdleTimeMS=120000"

    def start(self) -> EmbeddedServers:
        self.kafka_port = self.kafka_port or processes.free_port()
        self.mongo_port = self.mongo_port or processes.free_port()
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
        storage = self.data_dir / "mongo"
        storage.mkdir(parents=True, exist_ok=True)
        self.procs["mongo"] = processes.spawn(
            [secantus_binary(), "--host", "127.0.0.1", "--port", str(self.mongo_port),
             "--storage-path", str(storage), "--log-level", "WARNING", "--standalone"],
            log_path=self.data_dir / "logs" / "mongo.log",
            tie_to_parent=self.tie_to_parent,
        )
        processes.wait_until(self._mongo_ready, timeout=60, what="MongoDB (SecantusDB)")

    def _mongo_ready(self) -> bool:
        from pymongo import MongoClient

        with MongoClient(self.mongodb_uri, serverSelectionTimeoutMS=500) as client:
            client.admin.command("ping")
        return True

    def stop_one(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            processes.stop(proc, timeout=20.0)

    def kill_one(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            processes.kill(proc)

    def stop(self) -> None:
        """Stop both servers at once."""
        procs = list(self.procs.values())
        self.procs.clear()
        processes.stop_all(procs, timeout=20.0)

    def env(self) -> dict[str, str]:
        return {"BATON_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
                "BATON_MONGODB_URI": self.mongodb_uri}


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
