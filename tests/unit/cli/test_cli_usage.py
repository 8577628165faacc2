"""The command surface and command-line mistakes, through the real typer app (no services)."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()
Env = dict[str, str | None]
CLOSED = "http://127.0.0.1:1"  # nothing listens on port 1


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    monkeypatch.chdir(tmp_path)  # no .baton/run.json from a `make run` here
    return {"BATON_CONFIG_DIR": str(tmp_path / "config"), "BATON_TOKEN": None,
            "BATON_TRIGGER_URL": CLOSED, "BATON_COORDINATOR_URL": CLOSED,
            "BATON_ASSIGNMENT_URL": CLOSED, "BATON_NOTIFICATION_URL": CLOSED}


def test_every_command_of_the_brief_exists() -> None:
    root: Any = get_command(app)
    with root.make_context("baton", ["--help"], resilient_parsing=True) as ctx:
        commands = {name: root.get_command(ctx, name) for name in root.list_commands(ctx)}
    groups = {name: sorted(getattr(cmd, "commands", {})) for name, cmd in commands.items()}
    assert groups == {
        "login": [], "logout": [], "whoami": [],
        "definitions": ["list", "publish", "show", "validate"],
        "runs": ["cancel", "list", "migrate", "resume", "retry", "show", "skip", "start",
                 "suspend"],
        "work": ["approve", "bulk-reassign", "claim", "comment", "complete", "delegate", "list",
                 "reassign", "reject", "release", "show"],
        "tokens": ["issue", "list", "revoke"],
        "directory": ["load", "out-of-office", "show"],
        "deliveries": ["list"],
        "stats": [],
    }


@pytest.mark.parametrize("command", [
    ["whoami"], ["definitions", "list"], ["definitions", "show", "x"], ["runs", "list"],
    ["runs", "show", "r"], ["work", "list"], ["work", "show", "w"], ["tokens", "list"],
    ["directory", "show"], ["deliveries", "list"],
])
def test_every_read_command_has_a_json_flag(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "--json" in result.output


def test_an_unreachable_service_is_one_clear_line_and_exit_code_1(env: Env) -> None:
    result = runner.invoke(app, ["runs", "list"], env=env)
    assert result.exit_code == 1
    assert result.stderr == (f"error: cannot reach stage-coordinator at {CLOSED}: "
                             "is Baton running? (make run)\n")
    assert result.stdout == ""


def test_the_url_flag_wins_over_the_environment(env: Env) -> None:
    env["BATON_TRIGGER_URL"] = "http://127.0.0.1:2"
    result = runner.invoke(app, ["--trigger-url", CLOSED + "/", "definitions", "list"], env=env)
    assert result.exit_code == 1
    assert f"cannot reach trigger at {CLOSED}:" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["runs", "start", "hello", "--input", "novalue"],
     "error: --input 'novalue': expected key=value"),
    (["runs", "skip", "r", "s", "--output", "=1"], "error: --output '=1': expected key=value"),
    (["work", "complete", "w", "-v", "a=1", "-v", "a=2"],
     "error: --field: 'a' is given more than once"),
    (["work", "approve", "w", "--field", "a=1", "-f", "a=2"],
     "error: --field: 'a' is given more than once"),
    (["definitions", "validate", "/nonexistent/def.yaml"],
     "error: no such file: /nonexistent/def.yaml"),
    (["work", "complete", "w", "--values", "/nonexistent/v.json"],
     "error: no such file: /nonexistent/v.json"),
    (["directory", "out-of-office", "hugo"], "error: say --on (out of office) or --off (back)"),
])
def test_command_line_mistakes_exit_with_2_before_calling_anything(
    env: Env, args: list[str], message: str
) -> None:
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [message]


@pytest.mark.parametrize("args", [
    ["runs", "list", "--status", "bogus"], ["work", "list", "--status", "late"],
    ["work", "reassign", "w", "--to-kind", "team", "--to", "x"], ["runs", "migrate", "r"],
    ["definitions", "show", "x", "--version", "0"], ["runs", "frobnicate"],
])
def test_invalid_options_are_usage_errors(env: Env, args: list[str]) -> None:
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 2
    assert "Usage:" in result.stderr


def test_login_without_checking_saves_a_private_file_and_logout_removes_it(
    env: Env, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["--assignment-url", "http://saved:8104", "login", "--no-check",
                                 "bt_secret"], env=env)
    assert result.exit_code == 0, result.output
    path = tmp_path / "config" / "credentials.json"
    assert result.stdout == f"token saved to {path}\n"
    assert json.loads(path.read_text()) == {"token": "bt_secret",
                                            "services": {"assignment": "http://saved:8104"}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    result = runner.invoke(app, ["logout"], env=env)
    assert result.exit_code == 0 and result.stdout == f"logged out: removed {path}\n"
    assert not path.exists()
    result = runner.invoke(app, ["logout"], env=env)
    assert result.stdout == f"not logged in: {path} does not exist\n"


def test_login_reads_the_token_from_stdin_and_still_saves_when_unreachable(
    env: Env, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["login", "-"], input="bt_piped\n", env=env)
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("warning: saved without checking it: cannot reach assignment")
    saved = json.loads((tmp_path / "config" / "credentials.json").read_text())
    assert saved == {"token": "bt_piped"}


def test_login_refuses_an_empty_token(env: Env) -> None:
    result = runner.invoke(app, ["login", "-"], input="\n", env=env)
    assert result.exit_code == 2
    assert result.stderr == "error: the token is empty or contains spaces\n"


def test_a_run_about_a_record_takes_its_fields_from_flags_over_a_file(tmp_path: Path) -> None:
    from cli.runs import record_ref

    ben = tmp_path / "ben.yaml"
    ben.write_text("object_type: Employee\nrecord_id: e1002\n"
                   "fields: {employee_id: e1002, name: Ben, start: 2027-01-04}\n")
    fields_only = tmp_path / "fields.json"
    fields_only.write_text('{"employee_id": "e1003"}')

    assert record_ref(ben, ["name=Ben Carter", "level=3"], None, None) == {
        "object_type": "Employee", "record_id": "e1002",
        "fields": {"employee_id": "e1002", "name": "Ben Carter", "start": "2027-01-04",
                   "level": 3}}
    assert record_ref(fields_only, [], "Employee", "e1003") == {
        "object_type": "Employee", "record_id": "e1003", "fields": {"employee_id": "e1003"}}
    assert record_ref(None, [], None, None) is None


def test_a_record_without_its_type_and_id_is_a_usage_error(env: Env) -> None:
    result = runner.invoke(app, ["runs", "start", "employee-onboarding", "-f", "x=1"], env=env)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: a run about a record needs --object-type and --record-id (or a --record file "
        "with object_type and record_id)"]
