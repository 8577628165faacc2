"""Who may see what, on the running stack: runs, work items, tokens and sessions.

A person sees the runs they take part in (they started it, an item of it is or was for
them or their group or queue, they completed one); operators and admins see every run.
Anyone else gets the same 404 as for a run that does not exist.  Tokens take their roles
from the directory when used, the JSON API takes bearer tokens only, and signing out of
the Work Guide pages revokes the session on the server.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import httpx
import pytest
import yaml

from infra.stack import ServiceStack
from tests.e2e.conftest import ADMIN_TOKEN, ROOT, wait_for

pytestmark = pytest.mark.e2e

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PROBLEM = "application/problem+json"
DEFINITION = """
name: access
stages:
  - name: review
    steps:
      - {name: intake, kind: interactive, title: Intake, assignee: {queue: hr}}
      - name: sign_off
        kind: approval
        title: Sign off
        assignee: {manager_of: record.employee_id}
"""
PEOPLE = ("hana", "irene", "leo", "victor", "dana")


def directory(**roles: list[str]) -> dict[str, Any]:
    """The example directory, with ``victor`` an operator and any roles given here."""
    document = copy.deepcopy(yaml.safe_load((ROOT / "examples" / "directory.yaml").read_text()))
    wanted = {"victor": ["operator"], **roles}
    for user in document["users"]:
        if user["id"] in wanted:
            user["roles"] = wanted[user["id"]]
    return document


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def guide(stack: ServiceStack) -> str:
    """The assignment service, restarted knowing where the stage-coordinator listens."""
    stack.stop_one("assignment")
    stack.start_one("assignment", env={"BATON_COORDINATOR_URL": stack.url("stage-coordinator")})
    stack.wait_healthy("assignment")
    return stack.url("assignment")


@pytest.fixture(scope="module")
async def people(stack: ServiceStack, guide: str) -> dict[str, dict[str, str]]:
    async with httpx.AsyncClient(timeout=10) as client:
        loaded = await client.put(f"{guide}/directory", json=directory(), headers=ADMIN)
        assert loaded.status_code == 200, loaded.text
        tokens = {}
        for user in PEOPLE:
            issued = await client.post(f"{guide}/tokens", json={"user_id": user}, headers=ADMIN)
            assert issued.status_code == 201, issued.text
            tokens[user] = bearer(issued.json()["token"])
        published = await client.post(f"{stack.url('trigger')}/definitions", headers=ADMIN,
                                      content=DEFINITION.encode())
        assert published.status_code == 201, published.text
    return tokens


async def start(stack: ServiceStack, who: dict[str, str], employee: str) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        started = await client.post(f"{stack.url('trigger')}/runs", headers=who, json={
            "orchestration": "access",
            "record": {"object_type": "Employee", "record_id": employee,
                       "fields": {"employee_id": employee}}})
        assert started.status_code == 202, started.text
        return str(started.json()["run_id"])


async def item(guide: str, run_id: str, step: str) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.get(f"{guide}/work", params={"scope": "all"}, headers=ADMIN)
        return next((i for i in answer.json() if i["run_id"] == run_id and i["step"] == step),
                    None)
    return dict(await wait_for(found, timeout=30))


async def test_a_run_is_shown_to_who_takes_part_and_is_not_found_for_anyone_else(
    stack: ServiceStack, guide: str, people: dict[str, dict[str, str]],
) -> None:
    runs = f"{stack.url('stage-coordinator')}/runs"
    run_id = await start(stack, ADMIN, "e1001")  # e1001's manager is irene
    await item(guide, run_id, "sign_off")
    async with httpx.AsyncClient(timeout=10) as client:
        async def shown_run(run: str, who: str) -> bool:
            return (await client.get(f"{runs}/{run}", headers=people[who])).status_code == 200

        async def shown(who: str) -> bool:
            return await shown_run(run_id, who)

        # hana is in the hr queue; irene was named by assignment (the manager of e1001);
        # victor is an operator, dana an admin.
        for who in ("hana", "irene", "victor", "dana"):
            assert await wait_for(lambda who=who: shown(who), timeout=20), who
            listed = await client.get(runs, params={"orchestration": "access"},
                                      headers=people[who])
            assert run_id in {r["id"] for r in listed.json()}, who

        hidden = await client.get(f"{runs}/{run_id}", headers=people["leo"])
        missing = await client.get(f"{runs}/no-such-run", headers=people["leo"])
        assert hidden.status_code == missing.status_code == 404
        assert hidden.headers["content-type"] == missing.headers["content-type"] == PROBLEM
        assert hidden.json()["detail"].replace(run_id, "ID") == missing.json()["detail"].replace(
            "no-such-run", "ID")
        listed = await client.get(runs, params={"orchestration": "access"}, headers=people["leo"])
        assert listed.status_code == 200 and run_id not in {r["id"] for r in listed.json()}
        errors = await client.get(runs, params={"status": "error"}, headers=people["leo"])
        assert errors.status_code == 200 and errors.json() == []

        assert (await client.get(f"{stack.url('stage-coordinator')}/stats",
                                 headers=people["leo"])).status_code == 403
        assert (await client.get(f"{stack.url('stage-coordinator')}/stats",
                                 headers=people["victor"])).status_code == 200

        # Whoever starts a run sees it, and only they (and the pools of its items).
        own = await start(stack, people["leo"], "e1002")
        assert await wait_for(lambda: shown_run(own, "leo"), timeout=20)
        assert (await client.get(f"{runs}/{own}", headers=people["irene"])).status_code == 404

    async with httpx.AsyncClient(base_url=guide, timeout=10) as tab:
        tab.cookies.set("baton_token", people["irene"]["Authorization"].split()[1])
        assert (await tab.get(f"/ui/runs/{run_id}")).status_code == 200
        tab.cookies.set("baton_token", people["leo"]["Authorization"].split()[1])
        assert (await tab.get(f"/ui/runs/{run_id}")).status_code == 404


async def test_acting_on_anothers_item_is_not_found_whatever_the_action(
    stack: ServiceStack, guide: str, people: dict[str, dict[str, str]],
) -> None:
    run_id = await start(stack, ADMIN, "e1001")
    approval = await item(guide, run_id, "sign_off")  # irene's
    form = await item(guide, run_id, "intake")  # the hr queue's
    async with httpx.AsyncClient(base_url=guide, timeout=10) as client:
        for target in (approval, form):
            for action, body in (("approve", {}), ("reject", {}), ("complete", {"values": {}}),
                                 ("claim", {}), ("release", {}), ("comment", {"text": "hi"}),
                                 ("delegate", {"to": "leo"})):
                answer = await client.post(f"/work/{target['id']}/{action}", json=body,
                                           headers=people["leo"])
                assert answer.status_code == 404, (target["step"], action, answer.text)
                assert answer.headers["content-type"] == PROBLEM
        # The one who may act still gets the real reason.
        wrong_kind = await client.post(f"/work/{form['id']}/approve", json={},
                                       headers=people["hana"])
        assert wrong_kind.status_code == 422
        assert wrong_kind.json()["detail"] == "only an approval work item can be approved"


async def test_the_json_api_takes_bearer_tokens_only_and_signing_out_revokes_the_session(
    stack: ServiceStack, guide: str, people: dict[str, dict[str, str]],
) -> None:
    hana = people["hana"]["Authorization"].split()[1]
    async with httpx.AsyncClient(base_url=guide, timeout=10, follow_redirects=False,
                                 headers={"Origin": guide}) as tab:
        signed_in = await tab.post("/ui/login", data={"token": hana, "next": "/ui/work"})
        assert signed_in.status_code == 303
        match = re.search(r"baton_token=([^;]+)", signed_in.headers["set-cookie"])
        assert match
        session = match.group(1)
        assert session != hana  # a session of its own, not the pasted token
        page = await tab.get("/ui/work")
        assert page.status_code == 200 and "Hana Okafor" in page.text
        # The cookie alone is no credential for the JSON API (a same-site page could send it).
        assert (await tab.get("/work")).status_code == 401
        assert (await tab.post("/work/anything/claim")).status_code == 401
        csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
        assert csrf
        out = await tab.post("/ui/logout", data={"csrf": csrf.group(1)})
        assert out.status_code == 303
    async with httpx.AsyncClient(base_url=guide, timeout=10) as client:
        assert (await client.get("/me", headers=bearer(session))).status_code == 401
        assert (await client.get("/me", headers=people["hana"])).status_code == 200


async def test_a_demoted_admin_loses_the_role_and_a_removed_person_their_access(
    stack: ServiceStack, guide: str, people: dict[str, dict[str, str]],
) -> None:
    async with httpx.AsyncClient(base_url=guide, timeout=10) as client:
        minted = await client.post("/tokens", json={"user_id": "leo"}, headers=people["dana"])
        assert minted.status_code == 201, minted.text
        demoted = directory(dana=[])
        demoted["users"] = [u for u in demoted["users"] if u["id"] != "leo"]
        for group in demoted["groups"] + demoted["queues"]:
            group["members"] = [m for m in group.get("members", []) if m != "leo"]
        try:
            loaded = await client.put("/directory", json=demoted, headers=ADMIN)
            assert loaded.status_code == 200, loaded.text

            async def refused() -> bool:
                answer = await client.post("/tokens", json={"user_id": "hana"},
                                           headers=people["dana"])
                return answer.status_code == 403

            assert await wait_for(refused, timeout=20)  # within the authenticator's cache

            async def locked_out() -> bool:
                return (await client.get("/me", headers=people["leo"])).status_code == 401

            assert await wait_for(locked_out, timeout=20)
            me = await client.get("/me", headers=bearer(minted.json()["token"]))
            assert me.status_code == 401 and "no longer in the directory" in me.json()["detail"]
        finally:
            restored = await client.put("/directory", json=directory(), headers=ADMIN)
            assert restored.status_code == 200, restored.text


# --- the access and definitions topics: every service checks the same way ----------------

async def test_a_token_is_known_at_once_everywhere_and_its_revocation_reaches_them_all(
    stack: ServiceStack, guide: str, people: dict[str, dict[str, str]],
) -> None:
    """Issued: the next call to another service finds it (that service catches up with the
    access topic on the miss).  Revoked: refused by the Work Guide at once, and by the other
    services once they read the revocation (the propagation delay)."""
    async with httpx.AsyncClient(timeout=10) as client:
        minted = await client.post(f"{guide}/tokens", json={"user_id": "victor"},
                                   headers=people["dana"])
        assert minted.status_code == 201, minted.text
        victor = bearer(minted.json()["token"])
        elsewhere = {"trigger": "/definitions", "stage-coordinator": "/runs",
                     "notification": "/deliveries"}
        for service, path in elsewhere.items():
            answer = await client.get(stack.url(service) + path, headers=victor)
            # victor is an operator: notification's deliveries are for admins only.
            assert answer.status_code == (403 if service == "notification" else 200), (
                service, answer.text)
        revoked = await client.delete(f"{guide}/tokens/{minted.json()['id']}",
                                      headers=people["dana"])
        assert revoked.status_code == 204
        assert (await client.get(f"{guide}/me", headers=victor)).status_code == 401
        for service, path in elsewhere.items():
            async def refused(url: str = stack.url(service) + path) -> bool:
                return (await client.get(url, headers=victor)).status_code == 401

            assert await wait_for(refused, timeout=10), service


async def test_a_demoted_admin_loses_the_role_in_the_other_services(
    stack: ServiceStack, guide: str, people: dict[str, dict[str, str]],
) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        deliveries = f"{stack.url('notification')}/deliveries"
        validate = f"{stack.url('trigger')}/definitions/validate"
        assert (await client.get(deliveries, headers=people["dana"])).status_code == 200
        try:
            loaded = await client.put(f"{guide}/directory", json=directory(dana=[]),
                                      headers=ADMIN)
            assert loaded.status_code == 200, loaded.text

            async def demoted() -> bool:
                answers = [await client.get(deliveries, headers=people["dana"]),
                           await client.post(validate, headers=people["dana"],
                                             content=DEFINITION.encode())]
                return [a.status_code for a in answers] == [403, 403]

            assert await wait_for(demoted, timeout=10)
        finally:
            restored = await client.put(f"{guide}/directory", json=directory(), headers=ADMIN)
            assert restored.status_code == 200, restored.text


async def test_a_run_of_a_version_published_a_moment_ago_starts(
    stack: ServiceStack, people: dict[str, dict[str, str]],
) -> None:
    """The coordinator has not necessarily read the new version when the StartRun comes:
    it catches up with the definitions topic before it would call the version unknown."""
    trigger = stack.url("trigger")
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(3):
            published = await client.post(f"{trigger}/definitions", headers=ADMIN,
                                          content=DEFINITION.encode())
            assert published.status_code == 201, published.text
            version = published.json()["version"]
            started = await client.post(f"{trigger}/runs", headers=people["hana"], json={
                "orchestration": "access", "version": version,
                "record": {"object_type": "Employee", "record_id": "E-1",
                           "fields": {"employee_id": "E-1"}}})
            assert started.status_code == 202, started.text
            run_url = f"{stack.url('stage-coordinator')}/runs/{started.json()['run_id']}"

            async def running(url: str = run_url) -> dict[str, Any] | None:
                answer = await client.get(url, headers=ADMIN)
                return answer.json() if answer.status_code == 200 else None

            run = await wait_for(running, timeout=30)
            assert run["version"] == version


async def test_a_restarted_service_rebuilds_what_it_knows_from_the_topics(
    stack: ServiceStack, guide: str, people: dict[str, dict[str, str]],
) -> None:
    """The coordinator reads no other service's collection: after a restart, the tokens it
    accepts and the definitions it runs come from the access and definitions topics."""
    stack.stop_one("stage-coordinator")
    stack.start_one("stage-coordinator")
    stack.wait_healthy("stage-coordinator")
    async with httpx.AsyncClient(timeout=10) as client:
        listed = await client.get(f"{stack.url('stage-coordinator')}/runs",
                                  headers=people["victor"])
        assert listed.status_code == 200, listed.text
    run_id = await start(stack, people["hana"], "E-restart")
    assert (await item(guide, run_id, "intake"))["run_id"] == run_id
