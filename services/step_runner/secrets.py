"""Secrets named by a definition (``${secrets.NAME}``), filled in here and nowhere else.

A definition says which secret an http step sends (``Authorization: "Bearer
${secrets.PAYROLL_TOKEN}"``); the value never leaves the step-runner.  The coordinator
dispatches the reference as written, so neither Kafka, the dead letters, MongoDB nor the
API ever hold the value.  Values come from the step-runner's environment
(``BATON_SECRET_<NAME>``) or from a file ``<NAME>`` in ``BATON_SECRETS_DIR`` (a mounted
Kubernetes or Docker secret), read at each use so a rotated file is picked up.  Whatever an
attempt reports (its error, its outputs) has the values it used replaced by the reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.step_runner.actions import FatalError
from shared.definitions.credentials import SECRET_INPUTS  # where an action may name secrets
from shared.expressions import SECRET_REFERENCE

__all__ = ["SECRET_INPUTS", "SecretStore", "redact"]


class SecretStore:
    def __init__(self, environment: Mapping[str, str], directory: Path | None = None) -> None:
        self.environment = dict(environment)  # NAME -> value (BATON_SECRET_ already removed)
        self.directory = directory

    def value(self, name: str) -> str:
        if name in self.environment:
            return self.environment[name]
        if self.directory is not None:
            path = self.directory / name  # the name is [A-Za-z0-9_]: no path can escape
            try:
                return path.read_text(encoding="utf-8").rstrip("\r\n")
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise FatalError(f"secret {name!r} cannot be read: {exc.strerror}") from None
        where = f" or a file {name} in BATON_SECRETS_DIR" if self.directory else ""
        raise FatalError(
            f"unknown secret {name!r}: the step-runner has no BATON_SECRET_{name}{where}"
        )

    def fill(self, inputs: dict[str, Any], fields: tuple[str, ...]) -> dict[str, str]:
        """Fill the references in ``inputs[field]`` (in place); returns NAME -> value used."""
        used: dict[str, str] = {}
        for field in fields:
            if field in inputs:
                inputs[field] = self._fill(inputs[field], used)
        return used

    def _fill(self, value: Any, used: dict[str, str]) -> Any:
        if isinstance(value, str):
            def one(match: Any) -> str:
                name = match.group(1)
                used[name] = self.value(name)
                return used[name]
            return SECRET_REFERENCE.sub(one, value)
        if isinstance(value, list):
            return [self._fill(v, used) for v in value]
        if isinstance(value, dict):
            return {k: self._fill(v, used) for k, v in value.items()}
        return value


def redact(value: Any, used: Mapping[str, str]) -> Any:
    """``value`` with every secret value in ``used`` replaced by its reference."""
    if not used:
        return value
    if isinstance(value, str):
        # Longest first: a secret that contains another is replaced whole.
        for name, secret in sorted(used.items(), key=lambda item: -len(item[1])):
            if secret:
                value = value.replace(secret, f"${{secrets.{name}}}")
        return value
    if isinstance(value, list):
        return [redact(v, used) for v in value]
    if isinstance(value, dict):
        return {redact(k, used): redact(v, used) for k, v in value.items()}
    return value
