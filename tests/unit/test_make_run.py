"""What `make run` tells a newcomer: the Work Guide with sign-in links, chat, earlier state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from infra import run

ROOT = Path(__file__).resolve().parents[2]
GUIDE = "http://127.0.0.1:40123"
TOKENS = {"hana": "bt_h", "ivan": "bt_ivan", "fatima": "bt_fatima", "irene": "bt_irene"}


def test_the_next_steps_give_the_work_guide_and_a_sign_in_link_for_each_next_person() -> None:
    text = run.next_steps(GUIDE, TOKENS, "run-1")

    assert f"The Work Guide: {GUIDE}/ui" in text
    for person in ("ivan", "fatima", "irene"):
        assert f"{GUIDE}/ui/login#token={TOKENS[person]}" in text
    assert f"{GUIDE}/ui/runs/run-1" in text


def test_the_printed_cli_lines_are_commands_the_cli_accepts(tmp_path: Path) -> None:
    lines = [line.split(".venv/bin/baton ", 1)[1].split("  ")[0]
             for line in run.next_steps(GUIDE, TOKENS, "run-1").splitlines()
             if ".venv/bin/baton " in line]
    env = {"BATON_TOKEN": "bt_x", "BATON_CONFIG_DIR": str(tmp_path),
           **{f"BATON_{s}_URL": "http://127.0.0.1:9" for s in ("TRIGGER", "COORDINATOR",
                                                                "ASSIGNMENT", "NOTIFICATION")}}
    assert len(lines) == 3
    for line in lines:
        result = CliRunner().invoke(app, line.split(), env=env)
        assert result.exit_code == 1 and "cannot reach" in result.stderr, (line, result.output)


def test_a_chat_message_is_shown_with_the_handle_it_goes_to() -> None:
    body = json.dumps({"text": "*New work: HR form*\nFor Ada", "channel": "@hugo"}).encode()

    assert run.webhook_line("/chat", body) == "chat to @hugo: *New work: HR form* / For Ada"
    assert run.webhook_line("/payroll", b'{"text": "x"}') == "webhook /payroll: x"


def test_someone_in_the_demos_first_queue_is_reached_by_chat() -> None:
    directory = yaml.safe_load((ROOT / "examples" / "directory.yaml").read_text())
    hr = next(q for q in directory["queues"] if q["id"] == "hr")
    by_chat = [u for u in directory["users"]
               if u["id"] in hr["members"] and u["channels"][:1] == ["chat"]
               and u.get("chat_handle")]
    assert by_chat, "nobody in the hr queue prefers chat with a chat handle"


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(run, "STATE_DIR", tmp_path)
    data = tmp_path / "data"
    (data / "mongo").mkdir(parents=True)
    (data / "mongo" / "collection-1.wt").write_text("runs")
    (data / "logs").mkdir()
    (data / "logs" / "trigger.log").write_text("old")
    return data


def test_a_run_on_earlier_data_says_so_and_offers_a_clean_start(
    state: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert run.announce_state(state, fresh=False)

    said = capsys.readouterr().out
    assert "starting on the data of an earlier make run" in said and "make run FRESH=1" in said
    assert run.earlier_state(state) == ["mongo"]


def test_a_fresh_run_deletes_the_earlier_data_but_not_while_detached_servers_use_it(
    state: Path,
) -> None:
    (state.parent / "embedded.json").write_text("{}")
    assert not run.announce_state(state, fresh=True)
    assert run.earlier_state(state) == ["mongo"]

    (state.parent / "embedded.json").unlink()
    assert run.announce_state(state, fresh=True)
    assert run.earlier_state(state) == [] and (state / "logs").exists()


def test_a_first_run_says_nothing_about_earlier_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert run.announce_state(tmp_path / "data", fresh=False)
    assert capsys.readouterr().out == ""


def test_the_login_page_signs_in_from_a_links_fragment() -> None:
    web = ROOT / "services" / "assignment" / "web"
    assert '<script src="/ui/static/signin.js" defer></script>' in (
        web / "templates" / "login.html").read_text()
    script = (web / "static" / "signin.js").read_text()
    assert "#token=" in script and 'getElementById("sign-in")' in script


def onboarding_client(listed: list[dict[str, Any]], posted: list[dict[str, Any]]) -> httpx.Client:
    """The coordinator lists Ada's runs; the trigger takes a start."""
    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/runs":
            assert request.url.params["record_key"] == "Employee:e1001"
            return httpx.Response(200, json=listed)
        if request.method == "POST" and request.url.path == "/runs":
            posted.append(json.loads(request.content))
            return httpx.Response(202, json={"run_id": "run-new"})
        return httpx.Response(404)
    return httpx.Client(transport=httpx.MockTransport(answer), base_url="http://baton")


def test_a_second_make_run_goes_on_with_adas_open_onboarding_run() -> None:
    """Her record allows one onboarding run at a time: a second start would be refused."""
    posted: list[dict[str, Any]] = []
    listed = [{"id": "run-done", "status": "completed", "stage": "approval"},
              {"id": "run-open", "status": "running", "stage": "provisioning"}]
    with onboarding_client(listed, posted) as client:
        found = run.onboarding_run(client, "http://baton", "http://baton", {}, "http://inbox")

    assert found == ("run-open", "provisioning")
    assert posted == []


def test_the_first_make_run_starts_adas_onboarding_run() -> None:
    posted: list[dict[str, Any]] = []
    listed = [{"id": "run-done", "status": "completed", "stage": "approval"}]
    with onboarding_client(listed, posted) as client:
        found = run.onboarding_run(client, "http://baton", "http://baton", {}, "http://inbox")

    assert found == ("run-new", "hr")
    assert [p["record"]["record_id"] for p in posted] == ["e1001"]
