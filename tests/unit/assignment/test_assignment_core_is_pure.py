"""The assignment core imports no I/O library and reads no clock."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[3] / "services" / "assignment" / "core"
FORBIDDEN = {"faststream", "aiokafka", "pymongo", "motor", "httpx", "fastapi", "requests"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_core_imports_no_io_library() -> None:
    modules = sorted(CORE.glob("*.py"))
    assert modules
    for path in modules:
        roots = {name.split(".")[0] for name in imported_modules(path)}
        assert not roots & FORBIDDEN, f"{path.name} imports {roots & FORBIDDEN}"


def test_the_core_reads_no_clock_and_draws_no_random_ids() -> None:
    for path in sorted(CORE.glob("*.py")):
        text = path.read_text()
        for call in ("datetime.now(", "utcnow(", "time.time(", "uuid4(", "random."):
            assert call not in text, f"{path.name} calls {call}"
