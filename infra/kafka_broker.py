"""Genuine Apache Kafka as a child process: one combined broker and controller in KRaft mode.

The jars come from Maven Central (infra/kafka/pom.xml); ``make deps`` copies them into
``.baton/kafka/libs``.  The broker keeps its log under ``data_dir``, so a restart with the
same folder finds its topics, offsets and committed positions again; a wiped folder is a
broker that lost everything (the reconcile path, shared/broker_watch.py).

With ``scram_users`` the client listener is SASL_PLAINTEXT with SCRAM-SHA-512, the users are
written into the storage at format time, and the standard authorizer is on: only the
``super_users`` and what ACLs allow (infra/kafka_acls.py) may act.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from infra import processes

ROOT = Path(__file__).resolve().parent.parent
KAFKA_DIR = ROOT / "infra" / "kafka"
LIBS = ROOT / ".baton" / "kafka" / "libs"
SCRAM = "SCRAM-SHA-512"
# The broker's own identity on a SASL listener (inter-broker traffic and the admin in tests).
BROKER_USER = "baton-admin"


class KafkaNotInstalled(RuntimeError):
    """Java 17+ or the broker's jars are missing; the message says what to do."""


def java_binary() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    java = str(candidate) if candidate and candidate.exists() else shutil.which("java")
    if not java:
        raise KafkaNotInstalled(
            "Java 17 or newer is needed for the embedded Kafka broker: install OpenJDK 17 "
            "(Debian: apt-get install openjdk-17-jre-headless) and run `make deps`"
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    first = (out.stderr or out.stdout).splitlines()[0] if (out.stderr or out.stdout) else ""
    version = first.split('"')[1] if '"' in first else "0"
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    if major < 17:
        raise KafkaNotInstalled(f"the embedded Kafka broker needs Java 17 or newer; {java} "
                                f"is {first or 'unknown'}")
    return java


def classpath() -> str:
    jars = sorted(LIBS.glob("*.jar")) if LIBS.is_dir() else []
    if not any(j.name.startswith("kafka_2.13-") for j in jars):
        raise KafkaNotInstalled(
            f"Kafka's jars are not in {LIBS}: run `make deps` (it needs Maven: "
            "`mvn -f infra/kafka/pom.xml dependency:copy-dependencies` resolves them from "
            "Maven Central)"
        )
    return os.pathsep.join(str(j) for j in jars)


def kafka_version() -> str:
    jar = next(LIBS.glob("kafka_2.13-*.jar"), None)
    return jar.name.removeprefix("kafka_2.13-").removesuffix(".jar") if jar else "unknown"


def new_cluster_id() -> str:
    """Kafka's cluster id: 16 random bytes, URL-safe base64 without padding.

    Like Kafka's own ``Uuid.randomUuid``, never one that starts with "-": the storage tool
    would read it as an option.
    """
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


@dataclass
class EmbeddedKafka:
    data_dir: Path
    port: int = 0
    controller_port: int = 0
    heap_mb: int = 384
    scram_users: dict[str, str] = field(default_factory=dict)
    tie_to_parent: bool = True
    proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def secured(self) -> bool:
        return bool(self.scram_users)

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "kafka"

    def start(self, *, timeout: float = 90.0) -> EmbeddedKafka:
        java, cp = java_binary(), classpath()
        self.port = self.port or processes.free_port()
        self.controller_port = self.controller_port or processes.free_port()
        config = self._write_config()
        if not (self.log_dir / "meta.properties").exists():
            self._format(java, cp, config)
        self.proc = processes.spawn(
            [java, *self._jvm_options(), "-cp", cp, "kafka.Kafka", str(config)],
            log_path=self.data_dir / "logs" / "kafka.out",
            tie_to_parent=self.tie_to_parent,
        )
        processes.wait_until(self._ready, timeout=timeout, what=f"Kafka on {self.bootstrap}")
        return self

    def stop(self) -> None:
        """SIGTERM (a controlled shutdown), then SIGKILL after the grace period."""
        if self.proc is not None:
            processes.stop(self.proc, timeout=20.0)
            self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            processes.kill(self.proc)
            self.proc = None

    def client_options(self, user: str = BROKER_USER) -> dict[str, str]:
        """aiokafka keyword arguments for a client of this broker (as ``user`` when secured)."""
        if not self.secured:
            return {}
        return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": SCRAM,
                "sasl_plain_username": user, "sasl_plain_password": self.scram_users[user]}

    def _jvm_options(self) -> list[str]:
        logs = self.data_dir / "logs"
        return [
            f"-Xms{min(128, self.heap_mb)}m", f"-Xmx{self.heap_mb}m",
            # One small heap on a shared machine: the serial collector has no background
            # threads, so an idle broker stays idle.
            "-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError",
            # The quick compiler only: a broker that starts with every test and `make run`
            # spent about a third of its CPU in the optimising compiler's threads in the
            # first minutes of traffic (decision 22).
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true", "-Dcom.sun.management.jmxremote=false",
            f"-Dkafka.logs.dir={logs}",
            f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}",
            *self._profile_options(),
        ]

    @staticmethod
    def _profile_options() -> list[str]:
        """BATON_KAFKA_JFR=<file>: record the broker with Java Flight Recorder (the bench's
        profile; read it with `jfr print --events jdk.ExecutionSample <file>`)."""
        target = os.environ.get("BATON_KAFKA_JFR")
        if not target:
            return []
        return [f"-XX:StartFlightRecording=filename={target},settings=profile,dumponexit=true"]

    def _format(self, java: str, cp: str, config: Path) -> None:
        scram = []
        for user, password in self.scram_users.items():
            scram += ["--add-scram", f"{SCRAM}=[name={user},password={password}]"]
        cluster_id = new_cluster_id()
        out = subprocess.run(
            [java, "-Xmx256m", "-cp", cp, f"-Dkafka.logs.dir={self.data_dir / 'logs'}",
             f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}",
             "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
             "--config", str(config), "--ignore-formatted", *scram],
            capture_output=True, text=True, check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"formatting the Kafka storage failed: {out.stdout}{out.stderr}")

    def _write_config(self) -> Path:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        listener = "SASL_PLAINTEXT" if self.secured else "PLAINTEXT"
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"{listener}://127.0.0.1:{self.port},"
                         f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"{listener}://127.0.0.1:{self.port}",
            "listener.security.protocol.map": f"{listener}:{listener},CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": listener,
            "log.dirs": str(self.log_dir),
            # Baton creates every topic it uses (contracts/topics.py); nothing else may.
            "auto.create.topics.enable": "false",
            # One broker: every internal topic has one replica, and few partitions.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.num.partitions": "1",
            # A group that forms starts consuming at once (the default waits 3 s), and the
            # tests that kill a replica may use a session shorter than the default minimum 6 s.
            "group.initial.rebalance.delay.ms": "0",
            "group.min.session.timeout.ms": "1000",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            "background.threads": "2",
            "log.segment.bytes": str(64 * 1024 * 1024),
            "log.retention.hours": "168",
        }
        if self.secured:
            password = self.scram_users[BROKER_USER]
            lines |= {
                "sasl.enabled.mechanisms": SCRAM,
                "sasl.mechanism.inter.broker.protocol": SCRAM,
                f"listener.name.{listener.lower()}.{SCRAM.lower()}.sasl.jaas.config":
                    "org.apache.kafka.common.security.scram.ScramLoginModule required "
                    f'username="{BROKER_USER}" password="{password}";',
                "authorizer.class.name":
                    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                # The controller listener is loopback-only PLAINTEXT, so the broker reaches
                # its own controller as ANONYMOUS; clients cannot (they get only the SASL port).
                "super.users": f"User:{BROKER_USER};User:ANONYMOUS",
                "allow.everyone.if.no.acl.found": "false",
            }
        config = self.data_dir / "kafka.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        return config

    def _ready(self) -> bool:
        """Ready when the broker itself answers a metadata request naming itself."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"Kafka exited with {self.proc.returncode}; see "
                               f"{self.data_dir / 'logs'}")
        if not processes.port_open(self.port):
            return False
        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # callers may run a loop
            return pool.submit(asyncio.run, self._probe()).result(timeout=15)

    async def _probe(self) -> bool:
        from aiokafka import AIOKafkaClient

        client = AIOKafkaClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000,
                                **self.client_options())
        try:
            await client.bootstrap()
            return bool(client.cluster.brokers())
        finally:
            await client.close()
