"""The notification core imports no messaging, storage, network or mail library."""

from __future__ import annotations

import ast
from pathlib import Path

import services.notification.core as core

FORBIDDEN = {"faststream", "aiokafka", "pymongo", "motor", "httpx", "smtplib", "aiosmtplib"}
FORBIDDEN |= {"socket", "requests", "aiohttp", "services.notification.channels"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_modules_import_nothing_impure() -> None:
    files = sorted(Path(core.__file__).parent.glob("*.py"))
    assert len(files) > 1

    for path in files:
        for name in imported_modules(path):
            assert not any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN), (
                f"{path.name} imports {name}"
            )
