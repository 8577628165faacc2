"""Where the CLI finds services and token: flags > env > login file > run.json > defaults."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from cli.config import (
    DEFAULT_URLS,
    Flags,
    config_dir,
    credentials_path,
    read_credentials,
    remove_credentials,
    resolve,
    write_credentials,
)
from cli.errors import CliError


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"BATON_CONFIG_DIR": str(tmp_path / "config"), "HOME": str(tmp_path / "home")}


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    return path


def write_run_file(cwd: Path, token: str = "bt_run", port: int = 9000) -> None:
    (cwd / ".baton").mkdir()
    services = {"trigger": f"http://127.0.0.1:{port + 1}",
                "stage-coordinator": f"http://127.0.0.1:{port + 2}",
                "step-runner": f"http://127.0.0.1:{port + 3}",
                "assignment": f"http://127.0.0.1:{port + 4}",
                "notification": f"http://127.0.0.1:{port + 5}"}
    (cwd / ".baton" / "run.json").write_text(json.dumps(
        {"services": services, "admin_token": token, "BATON_KAFKA_BOOTSTRAP": "x"}))


def test_nothing_configured_gives_the_default_ports_and_no_token(
    env: dict[str, str], cwd: Path
) -> None:
    config = resolve(Flags(), env, cwd)
    assert config.token is None and config.token_source == "none"
    assert dict(config.urls) == dict(DEFAULT_URLS)
    assert config.url("stage-coordinator") == "http://127.0.0.1:8102"
    assert set(config.url_sources.values()) == {"default"}


def test_run_json_from_make_run_gives_urls_and_the_admin_token(
    env: dict[str, str], cwd: Path
) -> None:
    write_run_file(cwd)
    config = resolve(Flags(), env, cwd)
    assert config.token == "bt_run" and config.token_source == ".baton/run.json"
    assert config.url("trigger") == "http://127.0.0.1:9001"
    assert config.url("assignment") == "http://127.0.0.1:9004"
    assert config.url("notification") == "http://127.0.0.1:9005"


def test_the_login_file_wins_over_run_json(env: dict[str, str], cwd: Path) -> None:
    write_run_file(cwd)
    write_credentials(env, {"token": "bt_login", "services": {"trigger": "http://saved:1"}})
    config = resolve(Flags(), env, cwd)
    assert config.token == "bt_login"
    assert config.token_source == str(credentials_path(env))
    assert config.url("trigger") == "http://saved:1"
    assert config.url("assignment") == "http://127.0.0.1:9004"  # still from run.json


def test_environment_wins_over_the_login_file(env: dict[str, str], cwd: Path) -> None:
    write_credentials(env, {"token": "bt_login", "services": {"trigger": "http://saved:1"}})
    env.update({"BATON_TOKEN": "bt_env", "BATON_TRIGGER_URL": "http://env:2/",
                "BATON_COORDINATOR_URL": "http://env:3", "BATON_ASSIGNMENT_URL": "http://env:4",
                "BATON_NOTIFICATION_URL": "http://env:5"})
    config = resolve(Flags(), env, cwd)
    assert config.token == "bt_env" and config.token_source == "BATON_TOKEN"
    assert config.urls == {"trigger": "http://env:2", "stage-coordinator": "http://env:3",
                           "assignment": "http://env:4", "notification": "http://env:5"}
    assert config.url_sources["stage-coordinator"] == "BATON_COORDINATOR_URL"


def test_flags_win_over_everything(env: dict[str, str], cwd: Path) -> None:
    write_run_file(cwd)
    env.update({"BATON_TOKEN": "bt_env", "BATON_COORDINATOR_URL": "http://env:3"})
    flags = Flags(token="bt_flag", urls={"stage-coordinator": "http://flag:3", "trigger": None})
    config = resolve(flags, env, cwd)
    assert config.token == "bt_flag" and config.token_source == "--token"
    assert config.url("stage-coordinator") == "http://flag:3"
    assert config.url_sources["stage-coordinator"] == "--coordinator-url"
    assert config.url("trigger") == "http://127.0.0.1:9001"  # a flag not given falls through


def test_blank_values_do_not_count(env: dict[str, str], cwd: Path) -> None:
    write_run_file(cwd)
    env.update({"BATON_TOKEN": "  ", "BATON_TRIGGER_URL": ""})
    config = resolve(Flags(token=""), env, cwd)
    assert config.token == "bt_run"
    assert config.url("trigger") == "http://127.0.0.1:9001"


def test_credentials_file_is_private_and_can_be_removed(env: dict[str, str]) -> None:
    path = write_credentials(env, {"token": "bt_secret"})
    assert path == Path(env["BATON_CONFIG_DIR"]) / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert read_credentials(env) == {"token": "bt_secret"}
    write_credentials(env, {"token": "bt_other"})  # overwriting keeps it private
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert remove_credentials(env) is True
    assert remove_credentials(env) is False
    assert read_credentials(env) == {}


def test_config_dir_defaults_to_the_home_directory(tmp_path: Path) -> None:
    assert config_dir({"HOME": str(tmp_path)}) == tmp_path / ".config" / "baton"
    assert config_dir({"HOME": str(tmp_path), "BATON_CONFIG_DIR": "/x/y"}) == Path("/x/y")


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_a_broken_credentials_file_is_a_clear_error(
    env: dict[str, str], cwd: Path, content: str
) -> None:
    path = credentials_path(env)
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(CliError) as caught:
        resolve(Flags(), env, cwd)
    assert str(path) in caught.value.message and "fix or delete it" in caught.value.message
    assert caught.value.exit_code == 1
