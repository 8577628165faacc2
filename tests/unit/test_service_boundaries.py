"""Services share nothing but topics: no service imports another, and each collection has one
owner.

Each service's composition root (``build()`` in its ``__main__``) is run against a MongoDB
stand-in that records every collection asked for, so whatever a service wires up is seen,
whichever module reaches for it.  ``STILL_SHARED`` lists the crossings that remain, each with
why; the test fails on any other, and on an entry of the list that is no longer true (so
the list only shrinks).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {
    "trigger": "trigger",
    "stage_coordinator": "stage-coordinator",
    "step_runner": "step-runner",
    "assignment": "assignment",
    "notification": "notification",
}
OWNERS = {
    "definitions": "trigger", "subscriptions": "trigger", "starts": "trigger",
    "runs": "stage-coordinator", "run_history": "stage-coordinator",
    "step_attempts": "step-runner",
    "work_items": "assignment", "directory": "assignment", "users": "assignment",
    "groups": "assignment", "queues": "assignment", "tokens": "assignment",
    "deliveries": "notification", "delivery_log": "notification",
}
# The broker epoch (shared/broker_watch.py): every service records what it saw and which
# epoch it reconciled; it is the one collection meant to be shared.
EVERYONE = {"system"}
# Crossings still to remove, and why each is there.  None are left: token checks read the
# access topic and the coordinator the definitions topic (decision 0018).
STILL_SHARED: set[tuple[str, str]] = set()


class RecordingDatabase:
    def __init__(self, seen: set[str]) -> None:
        self._seen = seen

    def __getitem__(self, name: str) -> Any:
        self._seen.add(name)
        return RecordingCollection(name)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]


class RecordingCollection:
    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class RecordingClient:
    def __init__(self, seen: set[str]) -> None:
        self._seen = seen

    def __getitem__(self, name: str) -> RecordingDatabase:
        return RecordingDatabase(self._seen)


def collections_of(package: str, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    seen: set[str] = set()
    monkeypatch.setattr("shared.runtime.make_client",
                        lambda *args, **kwargs: RecordingClient(seen))
    main = importlib.import_module(f"services.{package}.__main__")
    runtime = main.build()
    seen.update(index.collection for index in runtime.indexes)
    return seen


@pytest.mark.parametrize("package", sorted(SERVICES))
def test_a_service_imports_no_other_service(package: str) -> None:
    others = {f"services.{p}" for p in SERVICES if p != package}
    for path in sorted((ROOT / "services" / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                crossing = [o for o in others if name == o or name.startswith(o + ".")]
                assert not crossing, f"{path.relative_to(ROOT)} imports {name}"


def test_shared_code_imports_no_service() -> None:
    for folder in ("shared", "contracts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            source = path.read_text()
            for node in ast.walk(ast.parse(source, str(path))):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                        "services"):
                    raise AssertionError(f"{path.relative_to(ROOT)} imports {node.module}")


@pytest.mark.parametrize("package", sorted(SERVICES))
def test_a_service_touches_only_its_own_collections(
    package: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = SERVICES[package]
    touched = collections_of(package, monkeypatch) - EVERYONE
    unknown = {c for c in touched if c not in OWNERS}
    assert not unknown, f"{service} uses collections nobody owns yet: {sorted(unknown)}"
    foreign = {(service, c) for c in touched if OWNERS[c] != service}
    assert foreign <= STILL_SHARED, (
        f"{service} touches collections of other services: {sorted(foreign - STILL_SHARED)}")
    gone = {(s, c) for s, c in STILL_SHARED if s == service} - foreign
    assert not gone, f"no longer shared, take them off STILL_SHARED: {sorted(gone)}"
