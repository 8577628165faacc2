"""The Work Guide's pages (/ui) without a browser: httpx against the running stack.

Sign-in and its cookie, the pages a person sees, the polled list fragment, a stranger's
404, the CSRF and origin checks on form posts, inline form errors, escaping of hostile
text from a record, and the admin pages.  The browser tests (tests/browser, make browser)
drive the same pages in Chromium.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
import yaml
from e2e.conftest import ROOT, wait_for

from infra.stack import ServiceStack

pytestmark = pytest.mark.e2e

ADMIN = {"Authorization": "Bearer bt_e2e_admin_token"}
HOSTILE = '<img src=x onerror="alert(1)">'
DEFINITION = """
name: ui-pages
stages:
  - name: check
    steps:
      - name: review
        kind: interactive
        title: "Review ${record.name}"
        assignee: {queue: hr}
        due: 1d
        form:
          type: object
          required: [amount]
          properties:
            amount: {type: integer, minimum: 1, title: Amount in euros}
            note: {type: string}
      - name: sign_off
        kind: approval
        title: Sign off
        assignee: {user: dana}
        after: [review]
"""


@pytest.fixture(scope="module")
def guide(stack: ServiceStack) -> str:
    """The assignment service, restarted knowing where the stage-coordinator listens."""
    stack.stop_one("assignment")
    stack.start_one("assignment", env={"BATON_COORDINATOR_URL": stack.url("stage-coordinator")})
    stack.wait_healthy("assignment")
    return stack.url("assignment")


@pytest.fixture(scope="module")
async def tokens(stack: ServiceStack, guide: str) -> dict[str, str]:
    directory = yaml.safe_load((ROOT / "examples" / "directory.yaml").read_text())
    async with httpx.AsyncClient(timeout=10) as client:
        loaded = await client.put(f"{guide}/directory", json=directory, headers=ADMIN)
        assert loaded.status_code == 200, loaded.text
        issued = {}
        for user in ("hana", "hugo", "leo", "dana"):
            answer = await client.post(f"{guide}/tokens", json={"user_id": user}, headers=ADMIN)
            assert answer.status_code == 201, answer.text
            issued[user] = answer.json()["token"]
        published = await client.post(f"{stack.url('trigger')}/definitions", headers=ADMIN,
                                      content=DEFINITION.encode())
        assert published.status_code == 201, published.text
    return issued


async def start_run(stack: ServiceStack, name: str) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        started = await client.post(f"{stack.url('trigger')}/runs", headers=ADMIN, json={
            "orchestration": "ui-pages",
            "record": {"object_type": "Case", "record_id": name, "fields": {"name": name}}})
        assert started.status_code == 202, started.text
        return str(started.json()["run_id"])


async def item_of(guide: str, run_id: str, step: str = "review") -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.get(f"{guide}/work", params={"scope": "all"}, headers=ADMIN)
        return next((i for i in answer.json()
                     if i["run_id"] == run_id and i["step"] == step), None)
    return dict(await wait_for(found, timeout=30))


def browser(guide: str, token: str | None = None) -> httpx.AsyncClient:
    """A client that behaves like a browser tab of this site (cookie, same-origin posts)."""
    client = httpx.AsyncClient(base_url=guide, timeout=10, follow_redirects=False,
                               headers={"Origin": guide, "Sec-Fetch-Site": "same-origin"})
    if token:
        client.cookies.set("baton_token", token)
    return client


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert match, "no CSRF token in the page"
    return match.group(1)


async def test_sign_in_sets_a_strict_httponly_cookie_and_refuses_unknown_tokens(
    guide: str, tokens: dict[str, str],
) -> None:
    async with browser(guide) as tab:
        away = await tab.get("/ui/work")
        assert away.status_code == 303 and away.headers["location"].startswith("/ui/login?next=")
        page = await tab.get("/ui/login")
        assert page.status_code == 200 and '<label for="token">' in page.text
        bad = await tab.post("/ui/login", data={"token": "bt_not_a_token", "next": "/ui/work"})
        assert bad.status_code == 401 and "unknown or revoked" in bad.text
        assert "set-cookie" not in bad.headers
        good = await tab.post("/ui/login", data={"token": tokens["hana"],
                                                 "next": "https://evil.example/"})
        assert good.status_code == 303 and good.headers["location"] == "/ui/work"
        cookie = good.headers["set-cookie"].lower()
        assert "baton_token=" in cookie and "httponly" in cookie
        assert "samesite=strict" in cookie and "path=/" in cookie
        tab.cookies.set("baton_token", tokens["hana"])
        mine = await tab.get("/ui/work")
        assert mine.status_code == 200 and "Hana Okafor" in mine.text
        assert "default-src 'self'" in mine.headers["content-security-policy"]
        out = await tab.post("/ui/logout", data={"csrf": csrf_of(mine.text)})
        assert out.status_code == 303
        assert 'baton_token=""' in out.headers["set-cookie"] or "max-age=0" in out.headers[
            "set-cookie"].lower()


async def test_my_work_the_item_and_the_run_timeline_render_for_the_person(
    stack: ServiceStack, guide: str, tokens: dict[str, str],
) -> None:
    run_id = await start_run(stack, "Case one")
    item = await item_of(guide, run_id)
    async with browser(guide, tokens["hana"]) as tab:
        mine = await tab.get("/ui/work")
        assert mine.status_code == 200
        assert "Review Case one" in mine.text and "My queues" in mine.text
        assert 'hx-trigger="every 3s"' in mine.text
        fragment = await tab.get("/ui/work/list", params={"status": "active"})
        assert fragment.status_code == 200 and "Review Case one" in fragment.text
        assert "<html" not in fragment.text
        version = re.search(r'id="work-version" name="since" value="([0-9a-f]+)"', fragment.text)
        assert version
        same = await tab.get("/ui/work/list", params={"status": "active",
                                                      "since": version.group(1)})
        assert same.status_code == 204  # nothing changed: nothing to swap

        page = await tab.get(f"/ui/work/{item['id']}")
        assert page.status_code == 200
        assert '<label for="field-0">Amount in euros</label>' in page.text
        assert 'type="number"' in page.text and 'min="1"' in page.text
        assert "Claim</button>" in page.text and "Complete</button>" in page.text
        assert "History" in page.text

        timeline = await tab.get(f"/ui/runs/{run_id}")
        assert timeline.status_code == 200, timeline.text
        assert "Who has the ball" in timeline.text and "the HR queue" in timeline.text
        assert "Stage check entered" in timeline.text and "review" in timeline.text


async def test_a_stranger_gets_404_for_anothers_item_and_run(
    stack: ServiceStack, guide: str, tokens: dict[str, str],
) -> None:
    run_id = await start_run(stack, "Case two")
    item = await item_of(guide, run_id)
    async with browser(guide, tokens["leo"]) as tab:
        mine = await tab.get("/ui/work")
        assert "Review Case two" not in mine.text
        hidden = await tab.get(f"/ui/work/{item['id']}")
        assert hidden.status_code == 404 and "Review Case two" not in hidden.text
        missing = await tab.get("/ui/work/no-such-item")
        assert missing.status_code == 404 and missing.text.count("Not found") == hidden.text.count(
            "Not found")
        stolen = await tab.post(f"/ui/work/{item['id']}/complete",
                                data={"csrf": csrf_of(mine.text), "f.amount": "5"})
        assert stolen.status_code == 404
        run = await tab.get(f"/ui/runs/{run_id}")
        assert run.status_code == 404
        admin_only = await tab.get("/ui/admin/queue")
        assert admin_only.status_code == 403
    async with httpx.AsyncClient(timeout=10) as client:
        still = await client.get(f"{guide}/work/{item['id']}", headers=ADMIN)
        assert still.json()["status"] == "open"


async def test_form_posts_need_the_sessions_csrf_token_and_this_origin(
    stack: ServiceStack, guide: str, tokens: dict[str, str],
) -> None:
    run_id = await start_run(stack, "Case three")
    item = await item_of(guide, run_id)
    claim = f"/ui/work/{item['id']}/claim"
    async with browser(guide, tokens["hana"]) as tab:
        page = await tab.get(f"/ui/work/{item['id']}")
        token = csrf_of(page.text)
        without = await tab.post(claim, data={})
        assert without.status_code == 403
        forged = await tab.post(claim, data={"csrf": "0" * 64})
        assert forged.status_code == 403
        async with browser(guide, tokens["hugo"]) as other:
            hugos = csrf_of((await other.get("/ui/work")).text)
        assert hugos != token
        someone_elses = await tab.post(claim, data={"csrf": hugos})
        assert someone_elses.status_code == 403
        cross_site = await tab.post(claim, data={"csrf": token},
                                    headers={"Origin": "http://evil.example"})
        assert cross_site.status_code == 403
        fetch_site = await tab.post(claim, data={"csrf": token},
                                    headers={"Sec-Fetch-Site": "cross-site"})
        assert fetch_site.status_code == 403
        login_elsewhere = await tab.post("/ui/login", data={"token": tokens["leo"]},
                                         headers={"Origin": "http://evil.example"})
        assert login_elsewhere.status_code == 403 and "set-cookie" not in login_elsewhere.headers
        async with httpx.AsyncClient(timeout=10) as client:
            untouched = await client.get(f"{guide}/work/{item['id']}", headers=ADMIN)
        assert untouched.json()["claimed_by"] is None

        claimed = await tab.post(claim, data={"csrf": token})
        assert claimed.status_code == 303
        assert claimed.headers["location"].endswith("?notice=claimed")
        shown = await tab.get(claimed.headers["location"])
        assert "You claimed this item" in shown.text and "Release to the pool" in shown.text


async def test_form_errors_are_shown_inline_and_good_values_complete_the_item(
    stack: ServiceStack, guide: str, tokens: dict[str, str],
) -> None:
    run_id = await start_run(stack, "Case four")
    item = await item_of(guide, run_id)
    url = f"/ui/work/{item['id']}"
    async with browser(guide, tokens["hugo"]) as tab:
        token = csrf_of((await tab.get(url)).text)
        wrong = await tab.post(f"{url}/complete", data={"csrf": token, "f.amount": "0",
                                                        "f.note": "kept <b>as typed</b>"})
        assert wrong.status_code == 422
        assert 'class="error-summary"' in wrong.text
        assert '<p class="error" id="field-0-error">' in wrong.text
        assert "0 is less than the minimum of 1" in wrong.text
        assert 'aria-invalid="true"' in wrong.text
        assert 'value="kept &lt;b&gt;as typed&lt;/b&gt;"' in wrong.text  # kept, escaped
        empty = await tab.post(f"{url}/complete", data={"csrf": token, "f.amount": ""})
        assert empty.status_code == 422 and "Amount in euros is required" in empty.text

        done = await tab.post(f"{url}/complete", data={"csrf": token, "f.amount": "12",
                                                       "f.note": ""})
        assert done.status_code == 303 and done.headers["location"].startswith(
            "/ui/work?notice=completed")
        listed = await tab.get(done.headers["location"])
        assert "is completed and has left your list" in listed.text
        assert f'data-item-id="{item["id"]}"' not in listed.text
    async with httpx.AsyncClient(timeout=10) as client:
        stored = (await client.get(f"{guide}/work/{item['id']}", headers=ADMIN)).json()
    assert stored["status"] == "completed" and stored["outputs"] == {"amount": 12}
    assert stored["completed_by"] == "hugo"


async def test_hostile_text_from_a_record_is_escaped(
    stack: ServiceStack, guide: str, tokens: dict[str, str],
) -> None:
    run_id = await start_run(stack, HOSTILE)
    item = await item_of(guide, run_id)
    async with browser(guide, tokens["hana"]) as tab:
        pages = [await tab.get("/ui/work"), await tab.get(f"/ui/work/{item['id']}"),
                 await tab.get("/ui/work/list"), await tab.get(f"/ui/runs/{run_id}")]
    escaped = "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;"
    for page in pages:
        assert page.status_code == 200, page.text
        assert HOSTILE not in page.text and "<img" not in page.text
    assert escaped in pages[0].text and escaped in pages[1].text


async def test_admins_reassign_in_bulk_and_see_stuck_runs(
    stack: ServiceStack, guide: str, tokens: dict[str, str],
) -> None:
    first = await item_of(guide, await start_run(stack, "Bulk one"))
    second = await item_of(guide, await start_run(stack, "Bulk two"))
    async with browser(guide, tokens["dana"]) as tab:
        queue = await tab.get("/ui/admin/queue", params={"pool": "queue:hr"})
        assert queue.status_code == 200
        assert "Review Bulk one" in queue.text and "Review Bulk two" in queue.text
        token = csrf_of(queue.text)
        nothing = await tab.post("/ui/admin/queue/reassign", data={
            "csrf": token, "to_kind": "user", "to": "hugo"})
        assert nothing.status_code == 422 and "Choose at least one item" in nothing.text
        moved = await tab.post("/ui/admin/queue/reassign", data={
            "csrf": token, "ids": [first["id"], second["id"], "no-such-item"],
            "to_kind": "user", "to": "hugo", "reason": "leave", "pool": "queue:hr"})
        assert moved.status_code == 422  # one of the three failed
        assert "Reassigned 2 of 3" in moved.text
        stuck = await tab.get("/ui/admin/stuck", params={"orchestration": "ui-pages",
                                                         "step": "review"})
        assert stuck.status_code == 200, stuck.text
        assert f"/ui/runs/{first['run_id']}" in stuck.text
        assert "Hugo Lindqvist" in stuck.text  # who holds the ball now
        bad_age = await tab.get("/ui/admin/stuck", params={"older_than": "soon"})
        assert bad_age.status_code == 200 and "Write it like 30m" in bad_age.text
        run = await tab.get(f"/ui/runs/{first['run_id']}")
        assert run.status_code == 200  # an admin sees every run
    async with httpx.AsyncClient(timeout=10) as client:
        for item in (first, second):
            stored = (await client.get(f"{guide}/work/{item['id']}", headers=ADMIN)).json()
            assert (stored["assignee_kind"], stored["assignee"]) == ("user", "hugo")
