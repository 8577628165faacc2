"""The coordinator core imports no I/O library and reads no clock: decide + evolve only."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[3] / "services" / "stage_coordinator" / "core"
FORBIDDEN = {"faststream", "aiokafka", "pymongo", "motor", "httpx", "fastapi", "requests"}


def imported_roots(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return {name.split(".")[0] for name in names}


def test_the_core_imports_no_io_library() -> None:
    modules = sorted(CORE.glob("*.py"))
    assert len(modules) > 5
    for path in modules:
        assert not imported_roots(path) & FORBIDDEN, f"{path.name} imports I/O"


def test_the_core_reads_no_clock_and_draws_no_random_ids() -> None:
    for path in sorted(CORE.glob("*.py")):
        text = path.read_text()
        for call in ("datetime.now(", "utcnow(", "time.time(", "uuid4(", "random."):
            assert call not in text, f"{path.name} calls {call}"
