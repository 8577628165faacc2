"""Secrets: named in definitions, filled in only by the step-runner, never reported back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from step_runner_support import dispatch, echo_server, handler, outcome

from contracts.events.steps import StepCompleted, StepFailed
from services.step_runner.actions.http import HttpAction
from services.step_runner.outbound import OutboundPolicy
from shared.expressions import ExpressionError, render

TOKEN = "s3cr3t-Vx9"
LOCAL_HTTP = {"http": HttpAction(OutboundPolicy(["127.0.0.1/32"]))}


def test_the_coordinator_leaves_secret_references_as_written() -> None:
    inputs = {"url": "${secrets.HOOK_URL}", "headers": {
        "Authorization": "Bearer ${secrets.TOKEN}", "X-Run": "${run.id}"}}
    assert render(inputs, {"run": {"id": "r1"}}) == {
        "url": "${secrets.HOOK_URL}",
        "headers": {"Authorization": "Bearer ${secrets.TOKEN}", "X-Run": "r1"}}


@pytest.mark.parametrize("template", ["${vars.url}", "${vars.url} ok", "${vars.nested}"])
def test_run_data_cannot_name_a_secret(template: str) -> None:
    context = {"vars": {"url": "https://evil.example/?k=${secrets.TOKEN}",
                        "nested": {"a": ["${secrets.TOKEN}"]}}}
    with pytest.raises(ExpressionError, match="secrets are named in the definition only"):
        render({"url": template}, context)


async def test_secrets_are_sent_and_never_reported() -> None:
    runner = handler(LOCAL_HTTP, secrets={"TOKEN": TOKEN})
    with echo_server() as server:
        inputs = {"url": server.url("/pay?key=${secrets.TOKEN}"),
                  "headers": {"Authorization": "Bearer ${secrets.TOKEN}"},
                  "body": {"note": "signed ${secrets.TOKEN}"},
                  "outputs": {"echoed": "response.body.headers.authorization",
                              "path": "response.body.path"}}
        envelope = dispatch("http", inputs)
        done, stored = await outcome(runner, envelope)
    (call,) = server.received
    assert call["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert call["path"] == f"/pay?key={TOKEN}" and TOKEN in call["body"]
    assert isinstance(done, StepCompleted)
    assert done.outputs["echoed"] == "Bearer ${secrets.TOKEN}"
    assert done.outputs["path"] == "/pay?key=${secrets.TOKEN}"
    assert TOKEN not in json.dumps(stored, default=str)
    assert TOKEN not in envelope.model_dump_json()  # the dispatch only names it


async def test_secrets_are_redacted_from_errors() -> None:
    runner = handler(LOCAL_HTTP, secrets={"TOKEN": TOKEN})
    with echo_server() as server:
        server.status = 403  # the error carries the url and 500 characters of the answer
        failed, stored = await outcome(runner, dispatch("http", {
            "url": server.url("/x?key=${secrets.TOKEN}"),
            "headers": {"X-Api-Key": "${secrets.TOKEN}"}}))
    assert isinstance(failed, StepFailed) and "403" in failed.error
    assert "${secrets.TOKEN}" in failed.error and TOKEN not in json.dumps(stored, default=str)


async def test_an_unknown_secret_fails_the_step_clearly() -> None:
    runner = handler(LOCAL_HTTP)
    failed, _ = await outcome(runner, dispatch("http", {
        "url": "http://127.0.0.1:9/", "headers": {"Authorization": "${secrets.MISSING}"}}))
    assert isinstance(failed, StepFailed) and failed.retryable is False
    assert "unknown secret 'MISSING'" in failed.error and "BATON_SECRET_MISSING" in failed.error


async def test_secrets_come_from_files_in_the_secrets_directory(tmp_path: Path) -> None:
    (tmp_path / "PAYROLL").write_text(TOKEN + "\n")
    runner = handler(LOCAL_HTTP, directory=tmp_path)
    with echo_server() as server:
        done, _ = await outcome(runner, dispatch("http", {
            "url": server.url(), "headers": {"Authorization": "${secrets.PAYROLL}"}}))
    assert isinstance(done, StepCompleted)
    assert server.received[0]["headers"]["authorization"] == TOKEN


async def test_only_the_inputs_that_take_secrets_are_filled() -> None:
    from services.step_runner.actions.basic import Noop

    runner = handler({"noop": Noop()}, secrets={"TOKEN": TOKEN})
    done, _ = await outcome(runner, dispatch("noop", {"text": "${secrets.TOKEN}"}))
    assert isinstance(done, StepCompleted) and done.outputs == {"text": "${secrets.TOKEN}"}


def test_the_step_runner_reads_secrets_from_its_environment(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    from services.step_runner.__main__ import StepRunnerSettings

    monkeypatch.setenv("BATON_SECRET_PAYROLL_TOKEN", TOKEN)
    monkeypatch.setenv("BATON_SECRETS_DIR", "/run/secrets")
    settings = StepRunnerSettings()
    assert settings.secret_values()["PAYROLL_TOKEN"] == TOKEN
    assert settings.secrets_dir == Path("/run/secrets")
