"""Settings shared by every service (environment variables with the BATON_ prefix).

Each service subclasses :class:`ServiceSettings` with its own fields; nothing else in
Baton reads ``os.environ``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BATON_", extra="ignore")

    service_name: str = "baton"
    kafka_bootstrap: str = "127.0.0.1:9092"
    # How to reach a managed cluster (docs/operations.md): TLS, SASL, the principal.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = (
        "PLAINTEXT"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_username: str | None = Field(
        default=None, description="SASL user; each service should have its own principal"
    )
    kafka_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(default=None, description="CA bundle (PEM)")
    kafka_ssl_certfile: Path | None = Field(default=None, description="client certificate")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="client key (PEM)")
    kafka_ssl_key_password: SecretStr | None = None
    kafka_client_id: str | None = Field(default=None, description="default: the service name")
    # Topics (contracts/topics.py) are created at start-up unless a cluster manages them.
    kafka_create_topics: bool = True
    kafka_replication_factor: int = Field(default=1, ge=1)
    kafka_min_insync_replicas: int | None = Field(default=None, ge=1)
    mongodb_uri: str = "mongodb://127.0.0.1:27017/?retryWrites=false&maxIdleTimeMS=120000"
    mongodb_database: str = "baton"
    # Where the one document every service shares lives: the broker's epoch (a lost broker,
    # shared/broker_watch.py).  Needed only when services keep their data on different
    # MongoDB servers (decision 25); by default the service's own.
    mongodb_shared_uri: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=0, ge=0, le=65535, description="0 picks the service default")
    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|text)$")
    # The event loop and HTTP parser uvicorn runs the service on (uvloop and httptools
    # cost less CPU per message and per request than asyncio's loop and h11).
    event_loop: Literal["asyncio", "uvloop"] = "uvloop"
    http_parser: Literal["h11", "httptools"] = "httptools"
    # Where to write a cProfile of the whole process when it stops (for `make bench`'s
    # profile tops); unset in production: profiling slows a service down.
    profile_dir: Path | None = None
    # cProfile (every call, timed in CPU: exact counts, inflated small functions) or a
    # statistical sample of the stacks per millisecond of CPU (shared/cpu_sampler.py).
    profile_mode: Literal["cprofile", "sample"] = "cprofile"
    # A replica that stops heartbeating loses its partitions after the session timeout; a
    # third of it between heartbeats is Kafka's rule, and no more keeps an idle group quiet.
    consumer_session_timeout_ms: int = 6000
    consumer_heartbeat_interval_ms: int = 2000
    consumer_max_records: int = 200
    # How long a consumer waits for a batch before it looks again.  It returns as soon as
    # records arrive, so a long wait costs no latency and keeps an idle consumer asleep.
    consumer_batch_timeout_ms: int = Field(default=1000, ge=1)
    # How long the broker may hold a fetch while no data arrives, for an idle consumer.
    # It answers as soon as data comes for a partition in that fetch; each empty answer
    # costs the broker CPU, and twice Kafka's default halves what idle consumers cost it
    # (docs/benchmarks.md).
    consumer_fetch_max_wait_ms: int = Field(default=1000, ge=0)
    # The same while batches keep coming (decision 41).  The client sends one fetch at a
    # time to a broker, and a fetch names only the partitions with nothing left to hand
    # over when it was sent: one drained meanwhile waits for that fetch to come back,
    # up to its wait, however much it has to read.  A consumer that found records in its
    # last look sends short fetches; one that waited a whole look for nothing, long ones.
    consumer_busy_fetch_max_wait_ms: int = Field(default=50, ge=0)
    # How much the broker gathers before it answers a fetch (or the wait above runs out).
    # One byte: a message goes to its consumer at once.  A consumer off the runs' path may
    # wait for more, and then reads a burst in fewer, larger fetches (notification).
    consumer_fetch_min_bytes: int = Field(default=1, ge=1)
    # How often a consumer commits its offsets while batches keep coming (after a quiet
    # spell it commits at once).  Each commit costs the broker a write; what is handled and
    # not yet committed is read again after a crash and dropped as a repeat (decision 31).
    consumer_commit_seconds: float = Field(default=0.5, ge=0)
    handler_attempts: int = Field(default=3, ge=1, description="tries before a dead letter")
    # How often the outbox sweep runs; the coordinator's sweep wakes on what is due
    # instead, and takes this as the age at which an outbox is a stop's leftover.
    outbox_sweep_seconds: float = Field(default=5.0, gt=0)
    # A published outbox costs no write: how far they went out is written per process
    # (its mark), at most this often (docs/decisions/0016-outbox-watermarks.md).
    outbox_mark_seconds: float = Field(default=1.0, gt=0)
    timer_poll_seconds: float = Field(default=0.5, gt=0)
    # Jobs that wake on what is due (shared/due.py) sleep at most this long: how soon due
    # work another replica stored (or left behind when it stopped) is picked up.
    due_max_sleep_seconds: float = Field(
        default=30.0, gt=0, description="longest sleep of the jobs that wake on what is due"
    )
    # Each refresh scans the active runs and work items: with the embedded MongoDB that
    # costs real time under load (docs/benchmarks.md), and stuck-step alerts think in
    # minutes, so once a minute is enough.
    gauge_refresh_seconds: float = Field(
        default=60.0, gt=0, description="how often the gauges computed from MongoDB refresh"
    )
    consumer_lag_seconds: float = Field(default=10.0, gt=0, description="consumer lag refresh")
    broker_watch_seconds: float = Field(
        default=15.0, gt=0,
        description="how often topics are checked (and a lost broker noticed)"
    )
    admin_token: str | None = Field(
        default=None, description="a bootstrap admin token accepted by every service's API"
    )
    token_days: float = Field(default=30.0, gt=0, description="how long an API token lasts")
    session_hours: float = Field(
        default=12.0, gt=0, description="how long a sign-in to the Work Guide pages lasts"
    )
