"""Start Baton's five services as separate processes against given servers.

Used by ``make run`` (infra/run.py) and by the end-to-end tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from infra import processes

SERVICES = {
    "trigger": "services.trigger",
    "stage-coordinator": "services.stage_coordinator",
    "step-runner": "services.step_runner",
    "assignment": "services.assignment",
    "notification": "services.notification",
}


@dataclass
class ServiceStack:
    env: dict[str, str]
    log_dir: Path
    names: tuple[str, ...] = tuple(SERVICES)
    # What a service sets apart from ``env`` (EmbeddedServers.service_env: its own MongoDB).
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def start(self, *, timeout: float = 60.0) -> ServiceStack:
        for name in self.names:
            self.start_one(name)
        for name in self.names:
            self.wait_healthy(name, timeout=timeout)
        return self

    def start_one(self, name: str, replica: int = 0, env: dict[str, str] | None = None) -> None:
        """Start one process of a service; ``env`` adds to the stack's environment."""
        key = name if replica == 0 else f"{name}#{replica}"
        port = self.ports.get(key) or processes.free_port()
        self.ports[key] = port
        env = {**os.environ, **self.env, **self.service_env.get(name, {}), **(env or {}),
               "BATON_HTTP_PORT": str(port),
               "PYTHONUNBUFFERED": "1"}
        if "stage-coordinator" in self.ports:  # the Work Guide pages read run timelines
            env.setdefault("BATON_COORDINATOR_URL", self.url("stage-coordinator"))
        self.procs[key] = processes.spawn(
            [sys.executable, "-m", SERVICES[name]],
            log_path=self.log_dir / f"{key.replace('#', '-')}.log",
            env=env,
        )

    def wait_healthy(self, key: str, *, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            proc = self.procs[key]
            if proc.poll() is not None:
                raise RuntimeError(f"{key} exited with {proc.returncode}; see {self.log_dir}")
            try:
                response = httpx.get(f"http://127.0.0.1:{self.ports[key]}/health", timeout=2)
                if response.status_code == 200:
                    return
                last = response.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise TimeoutError(f"{key} not healthy after {timeout:.0f}s: {last}")

    def stop_one(self, key: str) -> None:
        proc = self.procs.pop(key, None)
        if proc is not None:
            processes.stop(proc)

    def kill_one(self, key: str) -> None:
        proc = self.procs.pop(key, None)
        if proc is not None:
            processes.kill(proc)

    def stop(self) -> None:
        """Stop every process at once (each drains and closes its clients in parallel)."""
        procs = list(self.procs.values())
        self.procs.clear()
        processes.stop_all(procs)
