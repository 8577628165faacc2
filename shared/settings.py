"""Settings shared by every service (environment variables with the BATON_ prefix).

Each service subclasses :class:`ServiceSettings` with its own fields; nothing else in
Baton reads ``os.environ``.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BATON_", extra="ignore")

    service_name: str = "baton"
    kafka_bootstrap: str = "127.0.0.1:9092"
    mongodb_uri: str = "mongodb://127.0.0.1:27017/?retryWrites=false&maxIdleTimeMS=120000"
    mongodb_database: str = "baton"
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=0, ge=0, le=65535, description="0 picks the service default")
    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|text)$")
    consumer_session_timeout_ms: int = 6000
    consumer_heartbeat_interval_ms: int = 1000
    consumer_max_records: int = 200
    consumer_batch_timeout_ms: int = 5
    # How long the broker may hold a fetch for data.  Brokers answer as soon as data
    # arrives, but the embedded one waits the full time: short keeps a hop short.
    consumer_fetch_max_wait_ms: int = Field(default=10, ge=0)
    handler_attempts: int = Field(default=3, ge=1, description="tries before a dead letter")
    outbox_sweep_seconds: float = Field(default=5.0, gt=0)
    # Published outboxes are cleared in one write per tick (off the path of each change).
    outbox_clear_seconds: float = Field(default=0.2, gt=0)
    timer_poll_seconds: float = Field(default=0.5, gt=0)
    # Each refresh scans the active runs and work items: with the embedded MongoDB that
    # costs real time under load (docs/benchmarks.md), and stuck-step alerts think in
    # minutes, so once a minute is enough.
    gauge_refresh_seconds: float = Field(
        default=60.0, gt=0, description="how often the gauges computed from MongoDB refresh"
    )
    consumer_lag_seconds: float = Field(default=10.0, gt=0, description="consumer lag refresh")
    broker_watch_seconds: float = Field(
        default=5.0, gt=0, description="how often topics are checked (and a lost broker noticed)"
    )
    admin_token: str | None = Field(
        default=None, description="a bootstrap admin token accepted by every service's API"
    )
    token_days: float = Field(default=30.0, gt=0, description="how long an API token lasts")
    session_hours: float = Field(
        default=12.0, gt=0, description="how long a sign-in to the Work Guide pages lasts"
    )
