"""The Work Guide for admins and the edges of people's work: bulk reassignment, delegation,
out of office, an assignee that cannot be resolved (the item waits for the directory),
directory changes under their revision, a canceled run withdrawing its item, and tokens
that stop working when revoked.
"""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest
import yaml
from e2e.conftest import ADMIN_TOKEN, ROOT, wait_for

from infra.stack import ServiceStack

pytestmark = pytest.mark.e2e

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
DEFINITION = """
name: {name}
stages:
  - name: only
    steps:
      - name: task
        kind: interactive
        title: Do the task
        assignee: {assignee}
"""


@pytest.fixture(scope="module")
def directory() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "directory.yaml").read_text())
    return document


@pytest.fixture(scope="module")
async def tokens(stack: ServiceStack, directory: dict[str, Any]) -> dict[str, dict[str, str]]:
    url = stack.url("assignment")
    async with httpx.AsyncClient(timeout=10) as client:
        loaded = await client.put(f"{url}/directory", json=directory, headers=ADMIN)
        assert loaded.status_code == 200, loaded.text
        headers = {"admin": ADMIN}
        for user in ("dana", "hana", "hugo", "ivan", "irene", "leo"):
            issued = await client.post(f"{url}/tokens", json={"user_id": user}, headers=ADMIN)
            assert issued.status_code == 201, issued.text
            headers[user] = {"Authorization": f"Bearer {issued.json()['token']}"}
        for name, assignee in (("solo", "{user: ivan}"), ("pooled", "{queue: hr}"),
                               ("nobody", "{user: zoe}")):
            published = await client.post(
                f"{stack.url('trigger')}/definitions", headers=ADMIN,
                content=DEFINITION.format(name=name, assignee=assignee).encode())
            assert published.status_code == 201, published.text
    return headers


async def start(client: httpx.AsyncClient, stack: ServiceStack, orchestration: str) -> str:
    started = await client.post(f"{stack.url('trigger')}/runs", headers=ADMIN,
                                json={"orchestration": orchestration})
    assert started.status_code == 202, started.text
    run_id: str = started.json()["run_id"]
    return run_id


async def items_of(client: httpx.AsyncClient, stack: ServiceStack, who: dict[str, str],
                   run_id: str, **params: str) -> list[dict[str, Any]]:
    answer = await client.get(f"{stack.url('assignment')}/work", headers=who, params=params)
    assert answer.status_code == 200, answer.text
    return [item for item in answer.json() if item["run_id"] == run_id]


async def one_item(client: httpx.AsyncClient, stack: ServiceStack, who: dict[str, str],
                   run_id: str, **params: str) -> dict[str, Any]:
    async def found() -> list[dict[str, Any]]:
        return await items_of(client, stack, who, run_id, **params)
    items = await wait_for(found, timeout=30)
    assert len(items) == 1, items
    return items[0]


async def run_status(client: httpx.AsyncClient, stack: ServiceStack, run_id: str) -> str:
    answer = await client.get(f"{stack.url('stage-coordinator')}/runs/{run_id}", headers=ADMIN)
    return str(answer.json().get("status")) if answer.status_code == 200 else ""


async def test_admin_bulk_reassigns_and_only_admins_may(
    stack: ServiceStack, tokens: dict[str, dict[str, str]]
) -> None:
    guide = stack.url("assignment")
    async with httpx.AsyncClient(timeout=10) as client:
        runs = [await start(client, stack, "solo") for _ in range(3)]
        items = [await one_item(client, stack, tokens["ivan"], r) for r in runs]
        ids = [i["id"] for i in items]

        refused = await client.post(f"{guide}/work/bulk/reassign", headers=tokens["ivan"],
                                    json={"ids": ids, "to_kind": "user", "to": "irene"})
        assert refused.status_code == 403
        all_refused = await client.get(f"{guide}/work", headers=tokens["ivan"],
                                       params={"scope": "all"})
        assert all_refused.status_code == 403

        moved = await client.post(f"{guide}/work/bulk/reassign", headers=tokens["admin"],
                                  json={"ids": [*ids, "no-such-item"], "to_kind": "user",
                                        "to": "irene", "reason": "Ivan is at a conference"})
        assert moved.status_code == 200, moved.text
        results = {r["id"]: r for r in moved.json()["results"]}
        assert all(results[i]["ok"] for i in ids) and not results["no-such-item"]["ok"]

        for run_id, item_id in zip(runs, ids, strict=True):
            assert not await items_of(client, stack, tokens["ivan"], run_id)
            assert (await one_item(client, stack, tokens["irene"], run_id))["id"] == item_id
        everything = await client.get(f"{guide}/work", headers=tokens["admin"],
                                      params={"scope": "all", "limit": "500"})
        assert set(ids) <= {i["id"] for i in everything.json()}
        by_dana = await client.get(f"{guide}/work", headers=tokens["dana"],  # admin in the file
                                   params={"scope": "all", "limit": "500"})
        assert by_dana.status_code == 200 and set(ids) <= {i["id"] for i in by_dana.json()}

        history = (await client.get(f"{guide}/work/{ids[0]}", headers=tokens["irene"])).json()
        change = next(e for e in reversed(history["history"]) if e["field"] == "assignee")
        assert (change["old"], change["new"], change["actor"]) == ("ivan", "irene", "admin")


async def test_delegating_keeps_the_owner_in_sight_and_lets_the_delegate_finish(
    stack: ServiceStack, tokens: dict[str, dict[str, str]]
) -> None:
    guide = stack.url("assignment")
    async with httpx.AsyncClient(timeout=10) as client:
        run_id = await start(client, stack, "solo")
        item = await one_item(client, stack, tokens["ivan"], run_id)
        handed = await client.post(f"{guide}/work/{item['id']}/delegate", headers=tokens["ivan"],
                                   json={"to": "irene"})
        assert handed.status_code == 200, handed.text
        assert (await one_item(client, stack, tokens["irene"], run_id))["delegated_to"] == "irene"
        assert await items_of(client, stack, tokens["ivan"], run_id)  # still in sight
        done = await client.post(f"{guide}/work/{item['id']}/complete", headers=tokens["irene"],
                                 json={"values": {"note": "done for Ivan"}})
        assert done.status_code == 200, done.text
        assert done.json()["completed_by"] == "irene"

        async def completed() -> bool:
            return await run_status(client, stack, run_id) == "completed"
        await wait_for(completed)


async def test_out_of_office_sends_new_work_to_the_delegate(
    stack: ServiceStack, tokens: dict[str, dict[str, str]]
) -> None:
    guide = stack.url("assignment")
    async with httpx.AsyncClient(timeout=10) as client:
        other = await client.patch(f"{guide}/directory/users/ivan", headers=tokens["leo"],
                                   json={"out_of_office": True})
        assert other.status_code == 403
        away = await client.patch(f"{guide}/directory/users/ivan", headers=tokens["ivan"],
                                  json={"out_of_office": True, "delegate": "irene"})
        assert away.status_code == 200, away.text
        try:
            run_id = await start(client, stack, "solo")
            item = await one_item(client, stack, tokens["irene"], run_id)
            assert item["assignee"] == "irene" and item["delegated_from"] == "ivan"
        finally:
            back = await client.patch(f"{guide}/directory/users/ivan", headers=tokens["ivan"],
                                      json={"out_of_office": False})
            assert back.status_code == 200


async def test_an_unknown_assignee_waits_for_the_directory_and_the_run_then_completes(
    stack: ServiceStack, tokens: dict[str, dict[str, str]]
) -> None:
    """Regression: the step failed (or, with a directory that did not hold together, the
    request was dead-lettered) and the run stayed stuck after the directory was repaired."""
    guide = stack.url("assignment")
    async with httpx.AsyncClient(timeout=10) as client:
        run_id = await start(client, stack, "nobody")
        waiting = await one_item(client, stack, ADMIN, run_id, scope="all", status="waiting")
        assert (waiting["status"], waiting["assignee"]) == ("waiting", "")
        assert waiting["waiting_reason"] == "unknown user 'zoe'"
        assert await run_status(client, stack, run_id) == "running"

        stored = (await client.get(f"{guide}/directory", headers=ADMIN)).json()
        stored["users"].append({"id": "zoe", "name": "Zoe", "email": "zoe@example.com"})
        loaded = await client.put(f"{guide}/directory", json=stored, headers=ADMIN)
        assert loaded.status_code == 200, loaded.text
        assert loaded.json()["revision"] == stored["revision"] + 1
        zoe = await client.post(f"{guide}/tokens", json={"user_id": "zoe"}, headers=ADMIN)
        zoe_headers = {"Authorization": f"Bearer {zoe.json()['token']}"}
        item = await one_item(client, stack, zoe_headers, run_id)
        assert (item["id"], item["status"], item["assignee"]) == (waiting["id"], "open", "zoe")
        done = await client.post(f"{guide}/work/{item['id']}/complete", headers=zoe_headers,
                                 json={"values": {}})
        assert done.status_code == 200, done.text

        async def completed() -> bool:
            return await run_status(client, stack, run_id) == "completed"
        await wait_for(completed)


async def test_a_replace_made_on_an_old_revision_is_refused_and_loses_nobodys_change(
    stack: ServiceStack, tokens: dict[str, dict[str, str]]
) -> None:
    """Regression: a person's out-of-office change rewrote the whole directory from a cached
    copy, and an admin's replace racing it lost one or the other."""
    guide = stack.url("assignment")
    async with httpx.AsyncClient(timeout=10) as client:
        read = await client.get(f"{guide}/directory", headers=ADMIN)
        before = read.json()
        assert read.headers["etag"] == f'"{before["revision"]}"'
        away = await client.patch(f"{guide}/directory/users/leo", headers=tokens["leo"],
                                  json={"out_of_office": True, "delegate": "irene"})
        assert away.status_code == 200, away.text
        try:
            edited = copy.deepcopy(before)
            edited["users"] = [{**u, "name": "Hana O."} if u["id"] == "hana" else u
                               for u in edited["users"]]
            stale = await client.put(f"{guide}/directory", json=edited, headers=ADMIN)
            assert stale.status_code == 409, stale.text
            assert "changed since revision" in stale.text
            also_stale = await client.put(f"{guide}/directory", json=edited, headers={
                **ADMIN, "If-Match": f'"{before["revision"]}"'})
            assert also_stale.status_code == 409, also_stale.text
            now = (await client.get(f"{guide}/directory", headers=ADMIN)).json()
            leo = next(u for u in now["users"] if u["id"] == "leo")
            assert (leo["out_of_office"], leo["delegate"]) == (True, "irene")
            assert now["revision"] == before["revision"] + 1
            broken = copy.deepcopy(now)
            broken["users"] = [u for u in broken["users"] if u["id"] != "leo"]
            refused = await client.put(f"{guide}/directory", json=broken, headers=ADMIN)
            assert refused.status_code == 422, refused.text  # leo is still named elsewhere
        finally:
            back = await client.patch(f"{guide}/directory/users/leo", headers=tokens["leo"],
                                      json={"out_of_office": False, "delegate": None})
            assert back.status_code == 200, back.text


async def test_canceling_the_run_withdraws_its_work_item(
    stack: ServiceStack, tokens: dict[str, dict[str, str]]
) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        run_id = await start(client, stack, "pooled")
        item = await one_item(client, stack, tokens["hana"], run_id)
        canceled = await client.post(f"{stack.url('stage-coordinator')}/runs/{run_id}/cancel",
                                     headers=ADMIN, json={"reason": "the hire withdrew"})
        assert canceled.status_code == 202, canceled.text

        async def withdrawn() -> bool:
            return not await items_of(client, stack, tokens["hana"], run_id)
        await wait_for(withdrawn)
        gone = await client.get(f"{stack.url('assignment')}/work/{item['id']}",
                                headers=tokens["hana"])
        assert gone.json()["status"] == "canceled"
        finish = await client.post(f"{stack.url('assignment')}/work/{item['id']}/complete",
                                   headers=tokens["hana"], json={"values": {}})
        assert finish.status_code == 409, finish.text


async def test_a_revoked_token_stops_working_and_bad_requests_get_clear_4xx(
    stack: ServiceStack, tokens: dict[str, dict[str, str]]
) -> None:
    guide = stack.url("assignment")
    async with httpx.AsyncClient(timeout=10) as client:
        issued = await client.post(f"{guide}/tokens", json={"user_id": "leo"}, headers=ADMIN)
        token = {"Authorization": f"Bearer {issued.json()['token']}"}
        assert (await client.get(f"{guide}/me", headers=token)).json()["user_id"] == "leo"
        listed = await client.get(f"{guide}/tokens", headers=ADMIN, params={"user_id": "leo"})
        assert issued.json()["id"] in {t["id"] for t in listed.json()}
        assert all("token" not in t and "_id" not in t for t in listed.json())
        assert (await client.post(f"{guide}/tokens", json={"user_id": "leo"},
                                  headers=tokens["leo"])).status_code == 403
        revoked = await client.delete(f"{guide}/tokens/{issued.json()['id']}", headers=ADMIN)
        assert revoked.status_code == 204
        assert (await client.get(f"{guide}/me", headers=token)).status_code == 401

        assert (await client.get(f"{guide}/work")).status_code == 401
        unknown = await client.post(f"{guide}/tokens", json={"user_id": "nobody"}, headers=ADMIN)
        assert unknown.status_code == 404
        bad_kind = await client.post(f"{guide}/work/x/reassign", headers=ADMIN,
                                     json={"to_kind": "planet", "to": "mars"})
        assert bad_kind.status_code == 422
        broken = await client.put(f"{guide}/directory", headers=ADMIN,
                                  json={"users": [{"id": "a", "manager": "ghost"}]})
        assert broken.status_code == 422
        assert "ghost" in str(broken.json()["errors"])
