"""An approval step's form, end to end: the Work Guide page, the HTTP API and the CLI.

The form renders on the item's page, is validated (its ``required`` to approve, its
``required_on_reject`` to reject), and its values reach the item's outputs and history and
the run's step outputs, whichever way the person answers.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
import yaml
from e2e.conftest import ADMIN_TOKEN, ROOT, wait_for
from typer.testing import CliRunner

from cli.main import app
from infra.stack import ServiceStack

pytestmark = pytest.mark.e2e

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
DEFINITION = """
name: approval-form
stages:
  - name: legal
    steps:
      - name: legal_review
        kind: approval
        title: "Review the terms of ${record.name}"
        assignee: {user: leo}
        form:
          type: object
          required: [po_number]
          required_on_reject: [redlines]
          properties:
            po_number: {type: string, title: PO number}
            redlines: {type: string}
            seats: {type: integer, minimum: 1}
"""


@pytest.fixture(scope="module")
async def leo(stack: ServiceStack) -> str:
    """The directory and the definition loaded; Leo's token."""
    guide = stack.url("assignment")
    directory = yaml.safe_load((ROOT / "examples" / "directory.yaml").read_text())
    async with httpx.AsyncClient(timeout=10) as client:
        loaded = await client.put(f"{guide}/directory", json=directory, headers=ADMIN)
        assert loaded.status_code == 200, loaded.text
        published = await client.post(f"{stack.url('trigger')}/definitions", headers=ADMIN,
                                      content=DEFINITION.encode())
        assert published.status_code == 201, published.text
        issued = await client.post(f"{guide}/tokens", json={"user_id": "leo"}, headers=ADMIN)
        assert issued.status_code == 201, issued.text
        return str(issued.json()["token"])


async def open_item(stack: ServiceStack, name: str) -> tuple[str, str]:
    """A new run's approval item: (run id, item id)."""
    async with httpx.AsyncClient(timeout=10) as client:
        started = await client.post(f"{stack.url('trigger')}/runs", headers=ADMIN, json={
            "orchestration": "approval-form",
            "record": {"object_type": "Quote", "record_id": name, "fields": {"name": name}}})
        assert started.status_code == 202, started.text
        run_id = str(started.json()["run_id"])

        async def found() -> str | None:
            answer = await client.get(f"{stack.url('assignment')}/work",
                                      params={"scope": "all"}, headers=ADMIN)
            return next((i["id"] for i in answer.json() if i["run_id"] == run_id), None)
        return run_id, str(await wait_for(found))


async def run_outputs(stack: ServiceStack, run_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        async def completed() -> dict[str, Any] | None:
            run = (await client.get(f"{stack.url('stage-coordinator')}/runs/{run_id}",
                                    headers=ADMIN)).json()
            return run if run.get("status") == "completed" else None
        run = await wait_for(completed)
    return dict(run["steps"]["legal_review"]["outputs"])


async def stored_item(stack: ServiceStack, item_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(f"{stack.url('assignment')}/work/{item_id}", headers=ADMIN)
    return dict(answer.json())


async def test_the_page_renders_the_form_refuses_a_missing_field_and_approves_with_it(
    stack: ServiceStack, leo: str,
) -> None:
    guide = stack.url("assignment")
    run_id, item_id = await open_item(stack, "Quote page")
    url = f"/ui/work/{item_id}"
    async with httpx.AsyncClient(base_url=guide, timeout=10, headers={
            "Origin": guide, "Sec-Fetch-Site": "same-origin"}) as tab:
        tab.cookies.set("baton_token", leo)
        page = (await tab.get(url)).text
        assert 'name="f.po_number"' in page and 'name="f.redlines"' in page
        assert "Needed to approve." in page and "Needed to reject." in page
        match = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
        assert match
        csrf = match.group(1)
        missing = await tab.post(f"{url}/approve", data={"csrf": csrf, "comment": "fine"})
        assert missing.status_code == 422
        assert "PO number is required" in missing.text and ">fine</textarea>" in missing.text
        done = await tab.post(f"{url}/approve", data={"csrf": csrf, "comment": "fine",
                                                      "f.po_number": "PO-1", "f.seats": "3"})
        assert done.status_code == 303, done.text
        finished = (await tab.get("/ui/work", params={"status": "completed"})).text
        card = finished[finished.index(f'data-item-id="{item_id}"'):].split("</li>")[0]
        assert "Approved by Leo Marchetti" in card  # when and by whom, not how long it waits
        assert "waiting" not in card and "With " not in card

    expected = {"po_number": "PO-1", "seats": 3, "decision": "approved", "comment": "fine"}
    item = await stored_item(stack, item_id)
    assert item["outputs"] == expected
    assert [h["new"] for h in item["history"] if h["field"] == "outputs"] == [expected]
    assert await run_outputs(stack, run_id) == expected


async def test_the_api_enforces_the_form_and_a_rejection_needs_only_its_own_fields(
    stack: ServiceStack, leo: str,
) -> None:
    run_id, item_id = await open_item(stack, "Quote api")
    act = f"{stack.url('assignment')}/work/{item_id}"
    person = {"Authorization": f"Bearer {leo}"}
    async with httpx.AsyncClient(timeout=10) as client:
        unfilled = await client.post(f"{act}/approve", json={"comment": "ok"}, headers=person)
        assert unfilled.status_code == 422, unfilled.text
        assert "po_number" in unfilled.text
        no_redlines = await client.post(f"{act}/reject", json={"values": {"seats": 2}},
                                        headers=person)
        assert no_redlines.status_code == 422 and "redlines" in no_redlines.text
        rejected = await client.post(f"{act}/reject", headers=person, json={
            "comment": "no", "values": {"redlines": "clause 7"}})
        assert rejected.status_code == 200, rejected.text

    assert await run_outputs(stack, run_id) == {
        "redlines": "clause 7", "decision": "rejected", "comment": "no"}


async def test_the_cli_sends_fields_and_a_values_file(
    stack: ServiceStack, leo: str, tmp_path: Any,
) -> None:
    env = {"BATON_TOKEN": leo, "BATON_ASSIGNMENT_URL": stack.url("assignment"),
           "BATON_CONFIG_DIR": str(tmp_path)}
    runner = CliRunner()
    run_id, item_id = await open_item(stack, "Quote cli")
    shown = runner.invoke(app, ["work", "show", item_id], env=env)
    assert re.search(r"po_number\s+string\s+to approve", shown.stdout), shown.output
    assert re.search(r"redlines\s+string\s+to reject", shown.stdout), shown.output
    refused = runner.invoke(app, ["work", "approve", item_id], env=env)
    assert refused.exit_code == 1 and "po_number" in refused.stderr
    values = tmp_path / "values.yaml"
    values.write_text("po_number: PO-9\nseats: 1\n")
    approved = runner.invoke(app, ["work", "approve", item_id, "--values", str(values),
                                   "--field", "seats=4", "-m", "go", "--json"], env=env)
    assert approved.exit_code == 0, approved.output
    assert json.loads(approved.stdout)["outputs"]["seats"] == 4

    assert await run_outputs(stack, run_id) == {
        "po_number": "PO-9", "seats": 4, "decision": "approved", "comment": "go"}
