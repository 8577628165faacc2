"""Structured JSON logs that carry the run and correlation ids of the message at hand."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

run_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)
correlation_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)


@contextmanager
def message_context(run_id: str | None, correlation_id: str | None) -> Iterator[None]:
    run_token = run_id_var.set(run_id)
    corr_token = correlation_id_var.set(correlation_id)
    try:
        yield
    finally:
        run_id_var.reset(run_token)
        correlation_id_var.reset(corr_token)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        run_id = getattr(record, "run_id", None) or run_id_var.get()
        correlation_id = getattr(record, "correlation_id", None) or correlation_id_var.get()
        if run_id:
            entry["run_id"] = run_id
        if correlation_id:
            entry["correlation_id"] = correlation_id
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """For people watching `make run`: short, aligned, with the run id when there is one."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        run_id = getattr(record, "run_id", None) or run_id_var.get()
        run = f" run={run_id[:8]}" if run_id else ""
        text = f"{self.service:<18} {record.levelname.lower():<7}{run} {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "faststream", "pymongo", "uvicorn.access", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
