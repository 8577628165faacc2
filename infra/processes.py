"""Child processes that never outlive their parent, and readiness waits."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends SIGTERM when our parent dies."""
    os.setsid()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    tie_to_parent: bool = True,
) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
    return subprocess.Popen(
        list(argv),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        preexec_fn=_die_with_parent if tie_to_parent else os.setsid,
    )


def stop(proc: subprocess.Popen[bytes] | int, *, timeout: float = 10.0) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left after ``timeout``."""
    stop_all([proc], timeout=timeout)


def stop_all(procs: Sequence[subprocess.Popen[bytes] | int], *, timeout: float = 10.0) -> None:
    """Stop several children at once: each stops in its own time, the slowest sets the wait.

    SIGTERM to every child's process group, then SIGKILL to those still running after
    ``timeout``.
    """
    for proc in procs:
        _signal_group(_pid(proc), signal.SIGTERM)
    deadline = time.monotonic() + timeout
    running = list(procs)
    while running and time.monotonic() < deadline:
        running = [proc for proc in running if _alive(_pid(proc), proc)]
        if running:
            time.sleep(0.05)
    for proc in running:
        _signal_group(_pid(proc), signal.SIGKILL)
        if not isinstance(proc, int):
            proc.wait(timeout=5)


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL at once (chaos tests): no chance to clean up."""
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait(timeout=5)


def _pid(proc: subprocess.Popen[bytes] | int) -> int:
    return proc if isinstance(proc, int) else proc.pid


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _alive(pid: int, proc: subprocess.Popen[bytes] | int) -> bool:
    if not isinstance(proc, int):
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # readiness probes fail in many ways until ready
            last_error = exc
        time.sleep(0.1)
    raise TimeoutError(f"{what} was not ready after {timeout:.0f}s (last error: {last_error})")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
