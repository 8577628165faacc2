"""`baton` imports only what the command at hand needs (counted in modules, not seconds).

A command that only calls one service used to import every command group, yaml, and the
HTTP client's own command line (click, rich, pygments) before sending its request.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
# Modules a command that only calls the API has no use for.
NOT_FOR_AN_API_CALL = ("yaml", "rich", "pygments", "click", "httpx._main", "contracts",
                       "shared", "jsonschema", "cli.runs", "cli.definitions", "cli.directory",
                       "cli.tokens", "cli.account", "cli.stats", "cli.deliveries")
REPORT = """
import atexit, sys
names = {names!r}
atexit.register(lambda: print(sorted(n for n in names if sys.modules.get(n)), file=sys.stderr))
from cli.main import app
app({args!r}, prog_name="baton")
"""


def modules_after(args: list[str], names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` are imported once `baton ARGS` has run (in a fresh interpreter)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BATON_TOKEN": "bt_x",
           "BATON_ASSIGNMENT_URL": "http://127.0.0.1:1", "BATON_CONFIG_DIR": "/nonexistent"}
    done = subprocess.run([sys.executable, "-c", REPORT.format(names=names, args=args)],
                          cwd=ROOT / "tests", env=env, capture_output=True, text=True,
                          timeout=60)
    loaded: list[str] = ast.literal_eval(done.stderr.strip().splitlines()[-1])
    return loaded


def test_the_help_imports_no_command_group_and_no_http_client() -> None:
    names = (*NOT_FOR_AN_API_CALL, "httpx", "cli.work", "cli.client", "pydantic")
    assert modules_after(["--help"], names) == []


def test_listing_work_imports_the_work_group_and_the_http_client_only() -> None:
    names = (*NOT_FOR_AN_API_CALL, "httpx", "cli.work")
    assert modules_after(["work", "list"], names) == ["cli.work", "httpx"]


def test_the_help_lines_of_the_root_match_the_commands_own() -> None:
    from cli.main import LAZY, load

    for name, entry in LAZY.items():
        command = load(name)
        assert command.name == name
        assert (command.help or "").strip().splitlines()[0] == entry.help, name
