"""The per-invocation state: the global flags, the resolved configuration, clients."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cli.config import Config, Flags, resolve

if TYPE_CHECKING:
    from cli.client import ServiceClient


@dataclass
class Session:
    flags: Flags = field(default_factory=Flags)
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path = field(default_factory=Path.cwd)
    _config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = resolve(self.flags, self.env, self.cwd)
        return self._config

    def client(self, service: str) -> ServiceClient:
        from cli.client import ServiceClient  # httpx, only for commands that call a service

        config = self.config
        return ServiceClient(service, config.url(service), config.token)


def session(ctx: typer.Context) -> Session:
    """The session the root callback set up (a fresh one when a command runs on its own)."""
    root = ctx.find_root()
    if not isinstance(root.obj, Session):
        root.obj = Session()
    return root.obj
