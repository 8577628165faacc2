"""Where the services are and which token to use.

Each setting is taken from the first source that has it:

1. a command-line flag (``--token``, ``--trigger-url``, ...);
2. an environment variable (``BATON_TOKEN``, ``BATON_TRIGGER_URL``, ...);
3. the credentials file written by ``baton login`` (``$BATON_CONFIG_DIR/credentials.json``,
   else ``~/.config/baton/credentials.json``);
4. ``.baton/run.json`` in the current directory (written by ``make run``);
5. the default local ports (URLs only).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.errors import CliError

SERVICES = ("trigger", "stage-coordinator", "assignment", "notification")
DEFAULT_URLS: Mapping[str, str] = {
    "trigger": "http://127.0.0.1:8101",
    "stage-coordinator": "http://127.0.0.1:8102",
    "assignment": "http://127.0.0.1:8104",
    "notification": "http://127.0.0.1:8105",
}
URL_ENV: Mapping[str, str] = {
    "trigger": "BATON_TRIGGER_URL",
    "stage-coordinator": "BATON_COORDINATOR_URL",
    "assignment": "BATON_ASSIGNMENT_URL",
    "notification": "BATON_NOTIFICATION_URL",
}
TOKEN_ENV = "BATON_TOKEN"
CONFIG_DIR_ENV = "BATON_CONFIG_DIR"
CREDENTIALS_FILE = "credentials.json"
RUN_FILE = Path(".baton") / "run.json"


@dataclass(frozen=True)
class Flags:
    """What the command line said; None means "not given"."""

    token: str | None = None
    urls: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    token: str | None
    token_source: str
    urls: Mapping[str, str]
    url_sources: Mapping[str, str]

    def url(self, service: str) -> str:
        return self.urls[service]


def config_dir(env: Mapping[str, str]) -> Path:
    given = env.get(CONFIG_DIR_ENV)
    if given:
        return Path(given).expanduser()
    return Path(env.get("HOME") or Path.home()) / ".config" / "baton"


def credentials_path(env: Mapping[str, str]) -> Path:
    return config_dir(env) / CREDENTIALS_FILE


def _read_json_object(path: Path, what: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CliError(f"cannot read {what} {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CliError(f"{what} {path} is not valid JSON ({exc}); fix or delete it") from exc
    if not isinstance(data, dict):
        raise CliError(f"{what} {path} should hold a JSON object; fix or delete it")
    return data


def read_credentials(env: Mapping[str, str]) -> dict[str, Any]:
    return _read_json_object(credentials_path(env), "the credentials file")


def write_credentials(env: Mapping[str, str], data: Mapping[str, Any]) -> Path:
    """Write the credentials file readable by its owner only (0600, directory 0700)."""
    path = credentials_path(env)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(dict(data), handle, indent=2)
        handle.write("\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def remove_credentials(env: Mapping[str, str]) -> bool:
    path = credentials_path(env)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def read_run_file(cwd: Path) -> dict[str, Any]:
    return _read_json_object(cwd / RUN_FILE, "the run file")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def resolve(flags: Flags, env: Mapping[str, str], cwd: Path) -> Config:
    """The configuration in effect, and where each setting came from."""
    credentials = read_credentials(env)
    run_file = read_run_file(cwd)
    cred_urls = credentials.get("services") if isinstance(credentials.get("services"), dict) else {}
    run_urls = run_file.get("services") if isinstance(run_file.get("services"), dict) else {}
    cred_name = str(credentials_path(env))
    run_name = str(RUN_FILE)

    token_candidates = [
        (flags.token, "--token"),
        (env.get(TOKEN_ENV), TOKEN_ENV),
        (credentials.get("token"), cred_name),
        (run_file.get("admin_token"), run_name),
    ]
    token, token_source = next(
        ((t, s) for value, s in token_candidates if (t := _text(value)) is not None),
        (None, "none"),
    )

    urls: dict[str, str] = {}
    sources: dict[str, str] = {}
    for service in SERVICES:
        candidates = [
            (flags.urls.get(service), f"--{_flag_name(service)}-url"),
            (env.get(URL_ENV[service]), URL_ENV[service]),
            (cred_urls.get(service) if cred_urls else None, cred_name),
            (run_urls.get(service) if run_urls else None, run_name),
            (DEFAULT_URLS[service], "default"),
        ]
        url, source = next((u, s) for value, s in candidates if (u := _text(value)) is not None)
        urls[service] = url.rstrip("/")
        sources[service] = source
    return Config(token=token, token_source=token_source, urls=urls, url_sources=sources)


def _flag_name(service: str) -> str:
    return "coordinator" if service == "stage-coordinator" else service
