"""The `baton` CLI against the real stack: the five services on the session's Kafka and MongoDB.

Commands run in-process through typer's CliRunner (one also as the installed `baton` script),
configured only by environment variables, as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.conftest import ADMIN_TOKEN, ROOT
from receivers import MailSink, smtp_sink
from typer.testing import CliRunner, Result

from cli.main import app

pytestmark = pytest.mark.e2e

runner = CliRunner()

WAIT_DEFINITION = """\
name: cli-wait
description: One step that waits an hour.
stages:
  - name: waiting
    steps:
      - name: pause
        action: wait
        inputs: {duration: 1h}
"""

TASK_DEFINITION = """\
name: cli-task
stages:
  - name: review
    steps:
      - name: check
        kind: interactive
        title: Check the numbers
        assignee: {user: hana}
        form:
          type: object
          required: [amount]
          properties:
            amount: {type: integer, minimum: 1}
            note: {type: string}
        due: 1d
"""

APPROVAL_DEFINITION = """\
name: cli-approval
stages:
  - name: review
    steps:
      - name: sign_off
        kind: approval
        title: Sign off the change
        assignee: {group: it}
"""

MANAGER_DEFINITION = """\
name: cli-manager
record_fields:
  employee_id: string
  name: string
stages:
  - name: approval
    steps:
      - name: manager_ok
        kind: approval
        title: "Welcome ${record.name}?"
        assignee: {manager_of: record.employee_id}
"""

BAD_DEFINITION = """\
name: cli-bad
stages:
  - name: s1
    steps:
      - name: a
        action: htp
      - name: b
        kind: interactive
"""


class Baton:
    """Runs `baton ...` with the stack's URLs in the environment and a token."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, *args: str, token: str | None = None, code: int = 0,
                 input: str | None = None) -> Result:
        env = dict(self.env, **({"BATON_TOKEN": token} if token else {}))
        result = runner.invoke(app, list(args), env=env, input=input)
        assert result.exit_code == code, (args, result.exit_code, result.output)
        return result

    def json(self, *args: str, token: str | None = None) -> Any:
        return json.loads(self(*args, "--json", token=token).stdout)


def wait_until(check: Callable[[], Any], *, timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what} (last: {result!r})")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def mail() -> Iterator[tuple[MailSink, int]]:
    with smtp_sink() as server:
        yield server


@pytest.fixture(scope="module")
def stack_env(mail: tuple[MailSink, int]) -> dict[str, str]:
    """An operator who hears about run events, by email to a local SMTP server."""
    return {"BATON_SMTP_HOST": "127.0.0.1", "BATON_SMTP_PORT": str(mail[1]),
            "BATON_OPERATORS": "ops=ops@example.com"}


@pytest.fixture(scope="module")
def baton(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Baton:
    return Baton({
        "BATON_TOKEN": ADMIN_TOKEN,
        "BATON_TRIGGER_URL": stack.url("trigger"),
        "BATON_COORDINATOR_URL": stack.url("stage-coordinator"),
        "BATON_ASSIGNMENT_URL": stack.url("assignment"),
        "BATON_NOTIFICATION_URL": stack.url("notification"),
        "BATON_CONFIG_DIR": str(tmp_path_factory.mktemp("baton-config")),
    })


@pytest.fixture(scope="module")
def definitions_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("definitions")
    for name, text in (("wait.yaml", WAIT_DEFINITION), ("task.yaml", TASK_DEFINITION),
                       ("approval.yaml", APPROVAL_DEFINITION), ("bad.yaml", BAD_DEFINITION),
                       ("manager.yaml", MANAGER_DEFINITION)):
        (folder / name).write_text(text)
    return folder


def run_status(baton: Baton, run_id: str) -> dict[str, Any] | None:
    result = runner.invoke(app, ["runs", "show", run_id, "--json"], env=baton.env)
    if result.exit_code != 0:
        return None
    run: dict[str, Any] = json.loads(result.stdout)
    return run


def wait_for_status(baton: Baton, run_id: str, status: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        run = run_status(baton, run_id)
        return run if run and run["status"] == status else None
    found: dict[str, Any] = wait_until(reached, what=f"run {run_id} {status}")
    return found


@pytest.fixture(scope="module")
def hello_run(baton: Baton) -> dict[str, Any]:
    """examples/hello.yaml published and run to completion through the CLI."""
    published = baton("definitions", "publish", str(ROOT / "examples" / "hello.yaml"))
    assert published.stdout.startswith("published hello version ")
    started = baton.json("runs", "start", "hello")
    assert started["orchestration"] == "hello"
    return wait_for_status(baton, started["run_id"], "completed")


# --- definitions --------------------------------------------------------------------------


def test_validate_prints_each_problem_as_path_and_message(
    baton: Baton, definitions_dir: Path
) -> None:
    result = baton("definitions", "validate", str(definitions_dir / "bad.yaml"), code=1)
    assert result.stdout == ""
    first, *problems = result.stderr.splitlines()
    assert first == "error: the definition is invalid (trigger answered 422)"
    assert len(problems) == 2
    assert problems[0].startswith("stages[0](s1).steps[0](a).action: unknown action 'htp'")
    assert problems[1] == ("stages[0](s1).steps[1](b).assignee: interactive step 'b' needs an "
                           "assignee (user, group, queue, record_field or manager_of)")
    ok = baton("definitions", "validate", str(definitions_dir / "wait.yaml"))
    assert ok.stdout == (f"{definitions_dir / 'wait.yaml'} is valid: orchestration 'cli-wait', "
                         "1 stage\n")


def test_a_syntax_error_is_reported_with_its_line(baton: Baton, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "x", "stages": [}')
    result = baton("definitions", "validate", str(broken), code=1)
    lines = result.stderr.splitlines()
    assert lines[0] == "error: the definition is invalid (trigger answered 422)"
    assert len(lines) == 2 and "line 1" in lines[1]


def test_publish_list_and_show(baton: Baton, definitions_dir: Path) -> None:
    first = baton("definitions", "publish", str(definitions_dir / "wait.yaml"))
    second = baton("definitions", "publish", str(definitions_dir / "wait.yaml"))
    v1 = int(first.stdout.split()[-1])
    assert second.stdout == f"published cli-wait version {v1 + 1}\n"

    listed = baton("definitions", "list").stdout.splitlines()
    assert listed[0].split() == ["NAME", "VERSION", "PUBLISHED", "BY", "PUBLISHED", "AT"]
    rows = [line.split()[:3] for line in listed[1:] if line.startswith("cli-wait ")]
    assert rows[:2] == [["cli-wait", str(v1 + 1), "admin"], ["cli-wait", str(v1), "admin"]]
    as_json = baton.json("definitions", "list")
    assert {(d["name"], d["version"]) for d in as_json} >= {("cli-wait", v1), ("cli-wait", v1 + 1)}

    shown = baton("definitions", "show", "cli-wait").stdout.splitlines()
    assert shown[:3] == ["name:         cli-wait", f"version:      {v1 + 1}",
                         "description:  One step that waits an hour."]
    assert "1. stage waiting" in shown
    assert "     - pause  [background] action wait" in shown
    older = baton.json("definitions", "show", "cli-wait", "--version", str(v1))
    assert older["version"] == v1 and older["definition"]["stages"][0]["name"] == "waiting"
    as_yaml = baton("definitions", "show", "cli-wait", "--yaml").stdout
    assert as_yaml.startswith("name: cli-wait\n") and "action: wait" in as_yaml

    missing = baton("definitions", "show", "cli-wait", "--version", "999", code=1)
    assert missing.stderr == "error: no published orchestration 'cli-wait' (trigger answered 404)\n"


def test_validating_and_publishing_need_the_admin_or_designer_role(
    baton: Baton, definitions_dir: Path, people: dict[str, str]
) -> None:
    for command in ("validate", "publish"):
        result = baton("definitions", command, str(definitions_dir / "wait.yaml"),
                       token=people["hana"], code=1)
        assert result.stderr == ("error: validating and publishing definitions needs the admin"
                                 " or designer role (trigger answered 403)\n")


# --- runs ---------------------------------------------------------------------------------


def test_a_hello_run_is_listed_and_shown_as_a_timeline(
    baton: Baton, hello_run: dict[str, Any]
) -> None:
    run_id = hello_run["id"]
    listed = baton("runs", "list", "--orchestration", "hello").stdout.splitlines()
    assert listed[0].split() == ["RUN", "ORCHESTRATION", "V", "STATUS", "STAGE", "CREATED",
                                 "UPDATED", "ERROR"]
    row = next(line.split() for line in listed if line.startswith(run_id))
    assert row[1:5] == ["hello", str(hello_run["version"]), "completed", "say_hello"]
    assert [r["id"] for r in baton.json("runs", "list", "--status", "completed")].count(run_id) == 1
    assert run_id not in baton("runs", "list", "--status", "error").stdout

    shown = baton("runs", "show", run_id).stdout.splitlines()
    assert shown[0] == f"run:            {run_id}"
    assert f"orchestration:  hello v{hello_run['version']}" in shown
    assert "status:         completed" in shown
    steps = shown[shown.index("steps") + 2].split()
    assert steps[:6] == ["say_hello", "hello", "background", "completed", "1", "system"]
    timeline = shown[shown.index("history") + 2:]
    events = [line.split()[3] for line in timeline]
    assert events == ["RunCreated", "StageEntered", "StepStarted", "StepSucceeded",
                      "StageFinished", "RunStatusChanged"]
    assert timeline[0].endswith(f"run of hello v{hello_run['version']} created")
    assert timeline[3].endswith("step hello completed")
    assert timeline[-1].endswith("run completed")


def test_start_with_inputs_and_wait(
    baton: Baton, hello_run: dict[str, Any], tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs.yaml"
    inputs.write_text("greeting: hi\ncount: 1\n")
    result = baton("runs", "start", "hello", "--inputs", str(inputs), "--input", "count=3",
                   "--input", 'extra={"a": [1]}', "--wait", "--timeout", "30")
    first, last = result.stdout.splitlines()
    run_id = first.split()[2]
    assert first.endswith("waiting for it to finish") and last == f"run {run_id} completed"
    run = run_status(baton, run_id)
    assert run is not None and run["inputs"] == {"greeting": "hi", "count": 3, "extra": {"a": [1]}}

    missing = baton("runs", "start", "no-such-orchestration", code=1)
    assert missing.stderr == ("error: no published orchestration 'no-such-orchestration' "
                              "(trigger answered 404)\n")


def test_a_waiting_run_is_canceled(baton: Baton, definitions_dir: Path) -> None:
    baton("definitions", "publish", str(definitions_dir / "wait.yaml"))
    started = baton.json("runs", "start", "cli-wait", "--idempotency-key", "cli-cancel-1")
    again = baton.json("runs", "start", "cli-wait", "--idempotency-key", "cli-cancel-1")
    run_id = started["run_id"]
    assert again["run_id"] == run_id  # the same key starts one run

    def waiting() -> dict[str, Any] | None:
        run = run_status(baton, run_id)
        return run if run and run["timers"] else None
    run = wait_until(waiting, what="the wait timer")
    assert run["status"] == "running" and run["steps"]["pause"]["status"] == "in_progress"
    shown = baton("runs", "show", run_id).stdout.splitlines()
    assert shown[shown.index("timers") + 2].split()[:2] == ["wait", "pause"]

    result = baton("runs", "cancel", run_id, "--reason", "no longer needed")
    assert result.stdout.startswith(f"cancel of run {run_id} accepted (command ")
    run = wait_for_status(baton, run_id, "canceled")
    assert run["steps"]["pause"]["status"] == "canceled" and run["timers"] == []
    shown = baton("runs", "show", run_id).stdout.splitlines()
    timeline = shown[shown.index("history") + 2:]
    canceled = [line for line in timeline if line.endswith("step pause canceled: the run was "
                                                           "canceled")]
    assert len(canceled) == 1
    assert timeline[-1].split()[2:4] == ["admin", "RunStatusChanged"]
    assert timeline[-1].endswith("run canceled: no longer needed")
    assert timeline.index(canceled[0]) < len(timeline) - 1

    unknown = baton("runs", "cancel", "no-such-run", code=1)
    assert unknown.stderr == "error: no run no-such-run (stage-coordinator answered 404)\n"


def test_run_control_needs_the_operator_or_admin_role(
    baton: Baton, hello_run: dict[str, Any], people: dict[str, str]
) -> None:
    result = baton("runs", "suspend", hello_run["id"], token=people["hana"], code=1)
    assert result.stderr == ("error: this needs the operator or admin role "
                             "(stage-coordinator answered 403)\n")


# --- deliveries ---------------------------------------------------------------------------


def test_deliveries_list_shows_the_run_notifications(
    baton: Baton, hello_run: dict[str, Any]
) -> None:
    def delivered() -> list[dict[str, Any]]:
        found = baton.json("deliveries", "list", "--limit", "500")
        return [d for d in found if d["run_id"] == hello_run["id"]]
    mine = wait_until(delivered, what="a delivery for the hello run")
    assert {(d["source_type"], d["recipient"]) for d in mine} == {("RunCompleted", "ops")}
    table = baton("deliveries", "list", "--recipient", "ops").stdout.splitlines()
    assert table[0].split()[:5] == ["CREATED", "RECIPIENT", "CHANNEL", "EVENT", "STATUS"]
    row = next(line for line in table if hello_run["id"] in line)
    assert "RunCompleted" in row and "email" in row
    assert all(d["status"] == "failed" for d in baton.json("deliveries", "list", "-s", "failed"))


# --- people: directory, tokens, whoami ------------------------------------------------------


@pytest.fixture(scope="module")
def people(baton: Baton) -> dict[str, str]:
    """examples/directory.yaml loaded, and a token for hana (hr queue) and ivan (it group)."""
    loaded = baton("directory", "load", str(ROOT / "examples" / "directory.yaml"))
    assert loaded.stdout.startswith("loaded 14 users, 4 groups, 4 queues from ")
    tokens = {}
    for user in ("hana", "ivan"):
        issued = baton("tokens", "issue", user, "--note", "cli e2e")
        assert issued.stderr.startswith("issued token ")
        tokens[user] = issued.stdout.strip()
        assert tokens[user].startswith("bt_")
    return tokens


def test_whoami_names_the_token_owner(baton: Baton, people: dict[str, str]) -> None:
    shown = baton("whoami", token=people["hana"]).stdout.splitlines()
    assert shown[:3] == ["user:        hana", "name:        Hana Okafor",
                         "email:       hana@example.com"]
    assert "queues:      hr" in shown and "token from:  BATON_TOKEN" in shown
    assert baton.json("whoami")["roles"] == ["admin"]


def test_login_checks_the_token_and_later_commands_use_it(
    baton: Baton, people: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .baton/run.json from a `make run` here
    without_token = dict(baton.env, BATON_TOKEN="")
    result = runner.invoke(app, ["login", people["ivan"]], env=without_token)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "logged in as ivan (Ivan Petrov)"
    result = runner.invoke(app, ["whoami", "--json"], env=without_token)
    assert result.exit_code == 0 and json.loads(result.stdout)["user_id"] == "ivan"
    refused = runner.invoke(app, ["login", "bt_not_a_real_token"], env=without_token)
    assert refused.exit_code == 1
    assert refused.stderr == ("error: the token was refused, nothing saved: unknown or revoked "
                              "token (assignment answered 401)\n")
    assert runner.invoke(app, ["logout"], env=without_token).exit_code == 0
    result = runner.invoke(app, ["whoami"], env=without_token)
    assert result.exit_code == 1 and "no token is configured" in result.stderr


def test_tokens_are_listed_and_a_revoked_token_stops_working(
    baton: Baton, people: dict[str, str]
) -> None:
    token = baton("tokens", "issue", "dana", "--role", "admin").stdout.strip()
    assert baton.json("whoami", token=token)["user_id"] == "dana"
    listed = baton.json("tokens", "list", "--user", "dana")
    assert [(t["user_id"], t["roles"], t["revoked"]) for t in listed] == [
        ("dana", ["admin"], False)]
    table = baton("tokens", "list").stdout.splitlines()
    day = listed[0]["created_at"][:10]
    assert any(line.split()[:4] == [listed[0]["id"], "dana", "admin", day] for line in table)
    assert baton("tokens", "revoke", listed[0]["id"]).stdout == f"revoked token {listed[0]['id']}\n"
    assert baton.json("tokens", "list", "--user", "dana")[0]["revoked"] is True
    refused = baton("whoami", token=token, code=1)
    assert refused.stderr == "error: unknown or revoked token (assignment answered 401)\n"
    again = baton("tokens", "revoke", "nope", code=1)
    assert again.stderr == "error: no token 'nope' (assignment answered 404)\n"


def test_directory_show_and_out_of_office(baton: Baton, people: dict[str, str]) -> None:
    directory = baton.json("directory", "show")
    assert len(directory["users"]) == 14 and len(directory["groups"]) == 4
    shown = baton("directory", "show").stdout.splitlines()
    assert shown[0] == "users (14)"
    assert next(line for line in shown if line.startswith("hugo ")).split()[-3:] == [
        "in", "hana", "chat"]

    out = baton("directory", "out-of-office", "hugo", "--on", "--delegate", "dana")
    assert out.stdout == "hugo is out of office; new work goes to dana\n"
    hugo = next(u for u in baton.json("directory", "show")["users"] if u["id"] == "hugo")
    assert hugo["out_of_office"] is True and hugo["delegate"] == "dana"
    back = baton("directory", "out-of-office", "hugo", "--off", "--delegate", "hana")
    assert back.stdout == "hugo is back in the office\n"
    hugo = next(u for u in baton.json("directory", "show")["users"] if u["id"] == "hugo")
    assert hugo["out_of_office"] is False and hugo["delegate"] == "hana"

    other = baton("directory", "out-of-office", "hugo", "--on", token=people["ivan"], code=1)
    assert other.stderr == ("error: only the user or an admin may change this "
                            "(assignment answered 403)\n")
    unknown = baton("directory", "out-of-office", "nobody", "--on", code=1)
    assert unknown.stderr == "error: no user 'nobody' (assignment answered 404)\n"


def test_an_invalid_directory_lists_its_problems(
    baton: Baton, people: dict[str, str], tmp_path: Path
) -> None:
    broken = tmp_path / "directory.yaml"
    broken.write_text("users:\n  - {id: amy, manager: nobody}\ngroups: []\nqueues: []\n")
    result = baton("directory", "load", str(broken), code=1)
    lines = result.stderr.splitlines()
    assert lines[0] == "error: the directory is invalid (assignment answered 422)"
    assert len(lines) >= 2 and "nobody" in "\n".join(lines[1:])
    assert len(baton.json("directory", "show")["users"]) == 14  # nothing was replaced


# --- work ---------------------------------------------------------------------------------


def test_a_work_item_is_listed_completed_and_hidden_from_others(
    baton: Baton, people: dict[str, str], definitions_dir: Path) -> None:
    hana, ivan = people["hana"], people["ivan"]
    baton("definitions", "publish", str(definitions_dir / "task.yaml"))
    run_id = baton.json("runs", "start", "cli-task")["run_id"]

    def hanas_item() -> dict[str, Any] | None:
        items = baton.json("work", "list", token=hana)
        return next((i for i in items if i["run_id"] == run_id), None)
    item = wait_until(hanas_item, what="hana's work item")
    item_id = item["id"]
    assert (item["title"], item["status"], item["assignee_kind"], item["assignee"]) == (
        "Check the numbers", "open", "user", "hana")
    table = baton("work", "list", token=hana).stdout.splitlines()
    assert table[0].split()[:4] == ["ID", "TITLE", "KIND", "STATUS"]
    assert any(line.startswith(item_id) and "user hana" in line for line in table)

    shown = baton("work", "show", item_id, token=hana).stdout.splitlines()
    assert "title:       Check the numbers" in shown
    form = shown[shown.index("form") + 1:shown.index("form") + 4]
    assert [line.split() for line in form] == [["FIELD", "TYPE", "REQUIRED", "RULES"],
                                               ["amount", "integer", "yes", "minimum", "1"],
                                               ["note", "string", "no", "-"]]

    # Someone else sees nothing of it, not even that it exists.
    assert baton("work", "list", token=ivan).stdout == "no active work items\n"
    hidden = baton("work", "show", item_id, token=ivan, code=1)
    assert hidden.stderr == f"error: work item {item_id!r} not found (assignment answered 404)\n"
    assert baton("work", "complete", item_id, "-v", "amount=5", token=ivan, code=1).exit_code == 1
    assert baton("work", "list", "--all", token=ivan, code=1).stderr == (
        "error: scope=all needs the admin role (assignment answered 403)\n")
    assert item_id in [i["id"] for i in baton.json("work", "list", "--all")]

    invalid = baton("work", "complete", item_id, "-v", "amount=0", token=hana, code=1)
    assert invalid.stderr.splitlines() == [
        "error: the form has 1 field error (assignment answered 422)",
        "amount: 0 is less than the minimum of 1"]
    commented = baton("work", "comment", item_id, "looking at it", token=hana)
    assert commented.stdout == (f"commented on {item_id} (Check the numbers): "
                                "status open, user hana\n")
    done = baton("work", "complete", item_id, "-v", "amount=12", "-v", "note=fine", token=hana)
    assert done.stdout == f"completed {item_id} (Check the numbers): status completed, user hana\n"

    run = wait_for_status(baton, run_id, "completed")
    assert run["steps"]["check"]["outputs"] == {"amount": 12, "note": "fine"}
    assert run["steps"]["check"]["completed_by"] == "hana"
    assert baton("work", "list", token=hana).stdout == "no active work items\n"
    completed = baton.json("work", "list", "--status", "completed", "--orchestration", "cli-task",
                           token=hana)
    assert [i["id"] for i in completed] == [item_id]
    history = baton("work", "show", item_id, token=hana).stdout.splitlines()
    history = history[history.index("history") + 2:]
    assert [line.split()[2:4] for line in history if "hana" in line.split()[2:3]] == [
        ["hana", "comment"], ["hana", "complete"], ["hana", "complete"], ["hana", "complete"]]


def test_a_group_approval_is_claimed_delegated_and_approved(
    baton: Baton, people: dict[str, str], definitions_dir: Path) -> None:
    ivan = people["ivan"]
    baton("definitions", "publish", str(definitions_dir / "approval.yaml"))
    run_id = baton.json("runs", "start", "cli-approval")["run_id"]

    def ivans_item() -> dict[str, Any] | None:
        items = baton.json("work", "list", "--orchestration", "cli-approval", token=ivan)
        return next((i for i in items if i["run_id"] == run_id), None)
    item_id = wait_until(ivans_item, what="the it group's approval")["id"]
    assert baton("work", "list", token=people["hana"]).stdout == "no active work items\n"

    claimed = baton("work", "claim", item_id, token=ivan)
    assert claimed.stdout == (f"claimed {item_id} (Sign off the change): status claimed, "
                              "group it, claimed by ivan\n")
    released = baton("work", "release", item_id, token=ivan)
    assert released.stdout == f"released {item_id} (Sign off the change): status open, group it\n"
    conflict = baton("work", "release", item_id, token=ivan, code=1)
    assert conflict.stderr.startswith("error: ") and "(assignment answered 409)" in conflict.stderr
    baton("work", "claim", item_id, token=ivan)
    delegated = baton.json("work", "delegate", item_id, "irene", token=ivan)
    assert delegated["delegated_to"] == "irene"
    approved = baton.json("work", "approve", item_id, "--comment", "ship it", token=ivan)
    assert approved["status"] == "completed" and approved["decision"] == "approved"

    run = wait_for_status(baton, run_id, "completed")
    assert run["steps"]["sign_off"]["decision"] == "approved"
    assert run["steps"]["sign_off"]["comment"] == "ship it"
    timeline = baton("runs", "show", run_id).stdout
    assert "step sign_off completed: decision approved, comment 'ship it'" in timeline


def test_an_admin_reassigns_and_rejections_reach_the_run(
    baton: Baton, people: dict[str, str], definitions_dir: Path) -> None:
    baton("definitions", "publish", str(definitions_dir / "approval.yaml"))
    run_id = baton.json("runs", "start", "cli-approval")["run_id"]

    def any_item() -> dict[str, Any] | None:
        items = baton.json("work", "list", "--all", "--orchestration", "cli-approval")
        return next((i for i in items if i["run_id"] == run_id), None)
    item_id = wait_until(any_item, what="the approval")["id"]
    moved = baton("work", "reassign", item_id, "--to-kind", "user", "--to", "hana",
                  "--reason", "ivan is away")
    assert moved.stdout == f"reassigned {item_id} (Sign off the change): status open, user hana\n"
    refused = baton("work", "reassign", item_id, "--to-kind", "user", "--to", "ivan",
                    token=people["hana"], code=1)
    assert refused.stderr == "error: this action needs the admin role (assignment answered 403)\n"
    rejected = baton("work", "reject", item_id, "-m", "not now", token=people["hana"])
    assert rejected.stdout.startswith(f"rejected {item_id} (Sign off the change): status completed")
    run = wait_for_status(baton, run_id, "completed")
    assert run["steps"]["sign_off"]["decision"] == "rejected"


def test_a_run_about_a_record_starts_from_the_cli_and_reaches_the_records_manager(
    baton: Baton, people: dict[str, str], definitions_dir: Path, tmp_path: Path) -> None:
    baton("definitions", "publish", str(definitions_dir / "manager.yaml"))
    record = tmp_path / "ben.yaml"
    record.write_text("object_type: Employee\nrecord_id: e1002\nfields: {employee_id: e1002}\n")
    run_id = baton.json("runs", "start", "cli-manager", "--record", str(record),
                        "--field", "name=Ben Carter")["run_id"]

    def sofias_item() -> dict[str, Any] | None:
        items = baton.json("work", "list", "--all", "--orchestration", "cli-manager")
        return next((i for i in items if i["run_id"] == run_id), None)
    item = wait_until(sofias_item, what="the manager's approval")
    assert (item["assignee_kind"], item["assignee"]) == ("user", "sofia")  # e1002's manager
    assert item["title"] == "Welcome Ben Carter?"
    run = baton.json("runs", "show", run_id)
    assert run["record_key"] == "Employee:e1002"
    assert run["record"] == {"employee_id": "e1002", "name": "Ben Carter"}


def test_bulk_reassign_reports_each_item(
    baton: Baton, people: dict[str, str], definitions_dir: Path
) -> None:
    baton("definitions", "publish", str(definitions_dir / "approval.yaml"))
    run_ids = [baton.json("runs", "start", "cli-approval")["run_id"] for _ in range(2)]

    def both_items() -> list[str]:
        items = baton.json("work", "list", "--all", "--orchestration", "cli-approval")
        found = [i["id"] for i in items if i["run_id"] in run_ids]
        return found if len(found) == 2 else []
    item_ids = wait_until(both_items, what="two approvals")
    result = baton("work", "bulk-reassign", *item_ids, "no-such-item", "--to-kind", "user",
                   "--to", "hana", "--reason", "team change", code=1)
    rows = [line.split()[:2] for line in result.stdout.splitlines()]
    assert rows == [["ID", "RESULT"], [item_ids[0], "reassigned"], [item_ids[1], "reassigned"],
                    ["no-such-item", "failed"]]
    assert result.stderr == "error: 1 work item of 3 could not be reassigned\n"
    mine = {i["id"]: i for i in baton.json("work", "list", token=people["hana"])}
    assert all(mine[i]["assignee"] == "hana" for i in item_ids)
    for item_id in item_ids:
        baton("work", "approve", item_id, token=people["hana"])
    for run_id in run_ids:
        wait_for_status(baton, run_id, "completed")


# --- the installed script -------------------------------------------------------------------


def test_the_installed_baton_script_works(
    baton: Baton, hello_run: dict[str, Any], tmp_path: Path
) -> None:
    script = Path(sys.executable).with_name("baton")
    env = {**os.environ, **baton.env}
    listed = subprocess.run([str(script), "runs", "list", "--json"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)
    assert listed.returncode == 0, listed.stderr
    assert hello_run["id"] in [r["id"] for r in json.loads(listed.stdout)]
    env["BATON_COORDINATOR_URL"] = "http://127.0.0.1:1"
    down = subprocess.run([str(script), "runs", "list"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert down.returncode == 1
    assert down.stderr == ("error: cannot reach stage-coordinator at http://127.0.0.1:1: "
                           "is Baton running? (make run)\n")
