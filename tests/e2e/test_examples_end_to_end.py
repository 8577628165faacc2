"""The shipped examples run end to end: quote approval (deal desk, a VP only for discounts of
15% or more, legal only for custom terms, the result written back to the quote) and case
escalation (a ticketing call that fails sends the stage to its fault path, a support lead
takes the case, the case is updated upstream).  The onboarding example is driven in
test_work_guide_people.py.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import httpx
import pytest
import yaml
from e2e.conftest import ADMIN_TOKEN, ROOT, topic_messages, wait_for
from e2e.engine_support import Reply, change, send, serve_scripted

from infra.stack import ServiceStack
from services.stage_coordinator.store import unpacked

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def people(stack: ServiceStack) -> dict[str, dict[str, str]]:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    guide = stack.url("assignment")
    directory = yaml.safe_load((ROOT / "examples" / "directory.yaml").read_text())
    async with httpx.AsyncClient(timeout=10) as client:
        (await client.put(f"{guide}/directory", json=directory, headers=admin)).raise_for_status()
        tokens = {}
        for user in ("dmitri", "vera", "leo", "sam"):
            issued = await client.post(f"{guide}/tokens", json={"user_id": user}, headers=admin)
            tokens[user] = {"Authorization": f"Bearer {issued.json()['token']}"}
        for example in ("quote_approval", "case_escalation"):
            published = await client.post(
                f"{stack.url('trigger')}/definitions", headers=admin,
                content=(ROOT / "examples" / f"{example}.yaml").read_bytes())
            assert published.status_code == 201, published.text
    return tokens


async def act_on(client: httpx.AsyncClient, stack: ServiceStack, who: dict[str, str],
                 run_id: str, step: str, action: str, body: dict[str, Any]) -> None:
    guide = stack.url("assignment")

    async def item() -> list[dict[str, Any]]:
        found = (await client.get(f"{guide}/work", headers=who)).json()
        return [i for i in found if i["run_id"] == run_id and i["step"] == step]
    found = await wait_for(item, timeout=30)
    answer = await client.post(f"{guide}/work/{found[0]['id']}/{action}", headers=who,
                               json=body)
    assert answer.status_code == 200, answer.text


async def run_of_record(mongo: Any, record_key: str) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        doc: dict[str, Any] | None = await mongo.runs.find_one({"record_key": record_key})
        return unpacked(doc) if doc else None
    return dict(await wait_for(found, timeout=30))


async def finished(mongo: Any, run_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        doc: dict[str, Any] | None = await mongo.runs.find_one({"_id": run_id})
        final = doc and doc["status"] in ("completed", "error", "canceled")
        return unpacked(doc) if doc and final else None
    return dict(await wait_for(done, timeout=45))


def quote(quote_id: str, discount: int, custom_terms: bool) -> dict[str, Any]:
    return {"quote_id": quote_id, "status": "Submitted", "amount": 120_000,
            "discount": discount, "custom_terms": custom_terms, "owner_id": "dmitri"}


async def test_quote_with_a_small_discount_skips_the_vp_and_legal(
    stack: ServiceStack, people: dict[str, dict[str, str]], mongo: Any, servers: Any
) -> None:
    quote_id = f"q-{uuid.uuid4().hex[:8]}"
    new = quote(quote_id, discount=10, custom_terms=False)
    await send(servers.kafka_bootstrap, "records.changes",
               change("Quote", quote_id, "updated", new, {**new, "status": "Draft"}))
    run = await run_of_record(mongo, f"Quote:{quote_id}")
    async with httpx.AsyncClient(timeout=10) as client:
        await act_on(client, stack, people["dmitri"], run["_id"], "desk_review", "approve",
                     {"comment": "fine"})
    done = await finished(mongo, run["_id"])
    assert done["status"] == "completed", done.get("error")
    assert done["stages"]["vp"]["status"] == done["stages"]["legal"]["status"] == "skipped"
    assert done["stages"]["rejected"]["status"] in ("pending", "skipped")
    updates = await topic_messages(servers.kafka_bootstrap, "records.updates",
                                   run_id=run["_id"])
    assert [u["payload"]["fields"]["status"] for u in updates] == ["Approved"]


async def test_quote_with_a_big_discount_and_custom_terms_goes_to_the_vp_and_legal(
    stack: ServiceStack, people: dict[str, dict[str, str]], mongo: Any, servers: Any
) -> None:
    quote_id = f"q-{uuid.uuid4().hex[:8]}"
    new = quote(quote_id, discount=20, custom_terms=True)
    await send(servers.kafka_bootstrap, "records.changes",
               change("Quote", quote_id, "updated", new, {**new, "status": "Draft"}))
    run = await run_of_record(mongo, f"Quote:{quote_id}")
    async with httpx.AsyncClient(timeout=10) as client:
        await act_on(client, stack, people["dmitri"], run["_id"], "desk_review", "approve",
                     {"comment": ""})
        await act_on(client, stack, people["vera"], run["_id"], "vp_review", "approve",
                     {"comment": "ok for a strategic account"})
        await act_on(client, stack, people["leo"], run["_id"], "legal_review", "approve",
                     {"comment": "redlines accepted"})
    done = await finished(mongo, run["_id"])
    assert done["status"] == "completed", done.get("error")
    assert done["steps"]["vp_review"]["completed_by"] == "vera"
    assert done["steps"]["legal_review"]["decision"] == "approved"
    updates = await topic_messages(servers.kafka_bootstrap, "records.updates",
                                   run_id=run["_id"])
    assert [u["payload"]["fields"]["status"] for u in updates] == ["Approved"]


async def test_case_escalation_takes_the_fault_path_when_ticketing_fails(
    stack: ServiceStack, people: dict[str, dict[str, str]], mongo: Any, servers: Any,
    admin: dict[str, str],
) -> None:
    case_id = f"c-{uuid.uuid4().hex[:8]}"
    with contextlib.contextmanager(serve_scripted)() as ticketing:
        url = ticketing.script(Reply(400, {"error": "unknown queue"}))
        async with httpx.AsyncClient(timeout=10) as client:
            started = await client.post(f"{stack.url('trigger')}/runs", headers=admin, json={
                "orchestration": "case-escalation", "inputs": {"ticketing_url": url},
                "record": {"object_type": "Case", "record_id": case_id,
                           "fields": {"case_number": case_id, "subject": "Outage",
                                      "priority": "High", "account_id": "acme"}}})
            assert started.status_code == 202, started.text
            run_id = started.json()["run_id"]
            await act_on(client, stack, people["sam"], run_id, "lead_review", "complete",
                         {"values": {"resolution": "workaround", "notes": "restarted"}})
        done = await finished(mongo, run_id)
        assert len(ticketing.calls(url)) == 1  # a 400 is fatal: no retries
    assert done["status"] == "completed", done.get("error")
    assert done["stages"]["triage"]["status"] == "faulted"
    assert done["steps"]["open_ticket"]["status"] == "failed"
    updates = await topic_messages(servers.kafka_bootstrap, "records.updates", run_id=run_id)
    assert [u["payload"]["fields"] for u in updates] == [
        {"status": "Escalated", "resolution": "workaround", "escalated_by": "sam"}]
