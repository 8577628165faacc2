"""The Work Guide in a real browser: people sign in, fill forms, decide and follow runs.

Headless Debian Chromium driven by Playwright (``make browser``).  HR completes the
onboarding form and the laptop appears on IT's open page without a reload; a manager
rejects the approval and the run's timeline shows the way back to HR; a stranger cannot
open someone else's item; an admin reassigns from the queue view and looks at stuck runs;
and the pages hold at phone width, with labels on every control and keyboard use.
The screenshots in docs/work-guide.md are taken here (docs/images/work-guide-*.png).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import yaml
from e2e.conftest import ROOT, wait_for
from playwright.async_api import Page, expect
from receivers import WebhookReceiver, webhook_receiver

from infra.stack import ServiceStack

pytestmark = pytest.mark.browser

ADMIN = {"Authorization": "Bearer bt_e2e_admin_token"}
IMAGES = ROOT / "docs" / "images"
PEOPLE = ("hana", "hugo", "ivan", "irene", "sofia", "leo", "dana")
PRIVATE = """
name: browser-private
stages:
  - name: only
    steps:
      - name: personal
        kind: interactive
        title: "Hana's personal task"
        assignee: {user: hana}
        due: 4h
"""
UNLABELLED = """() => [...document.querySelectorAll(
    'input:not([type=hidden]), select, textarea')]
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
               && !e.getAttribute('aria-labelledby'))
  .map(e => e.outerHTML)"""


@pytest.fixture(scope="module")
def hooks() -> Iterator[WebhookReceiver]:
    """Payroll and the welcome chat: a local receiver that answers 200."""
    with webhook_receiver() as receiver:
        yield receiver


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
        for user in PEOPLE:
            answer = await client.post(f"{guide}/tokens", json={"user_id": user}, headers=ADMIN)
            assert answer.status_code == 201, answer.text
            issued[user] = answer.json()["token"]
        for definition in ((ROOT / "examples" / "onboarding.yaml").read_bytes(),
                           PRIVATE.encode()):
            published = await client.post(f"{stack.url('trigger')}/definitions",
                                          headers=ADMIN, content=definition)
            assert published.status_code == 201, published.text
    IMAGES.mkdir(parents=True, exist_ok=True)
    return issued


@pytest.fixture
async def people(chromium: Any, guide: str) -> AsyncIterator[dict[str, Any]]:
    """Opens one browser context per person; checks no page had a script or CSP error."""
    opened: dict[str, Any] = {}
    problems: list[str] = []

    async def open_for(who: str, width: int = 1000, height: int = 800) -> Page:
        context = await chromium.new_context(base_url=guide,
                                             viewport={"width": width, "height": height})
        page = await context.new_page()
        page.on("pageerror", lambda exc: problems.append(f"{who}: {exc}"))
        page.on("console", lambda m: problems.append(f"{who}: {m.text}")
                if m.type == "error" and "Failed to load resource" not in m.text else None)
        opened[who] = context
        return page

    yield {"open": open_for}
    for context in opened.values():
        await context.close()
    assert not problems, problems


async def sign_in(people: dict[str, Any], who: str, token: str, *, width: int = 1000,
                  height: int = 800, screenshot: str | None = None) -> Page:
    page: Page = await people["open"](who, width, height)
    await page.goto("/ui/login")
    await page.get_by_label("Your token").fill(token)
    if screenshot:
        await shoot(page, screenshot)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/ui/work")
    await expect(page.get_by_role("heading", name="My work")).to_be_visible()
    return page


async def shoot(page: Page, name: str) -> None:
    await page.screenshot(path=str(IMAGES / f"work-guide-{name}.png"), full_page=True)


async def assert_labelled(page: Page) -> None:
    assert await page.evaluate(UNLABELLED) == [], f"controls without a label on {page.url}"


async def start_onboarding(stack: ServiceStack, hooks: WebhookReceiver, employee: str,
                           name: str) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        started = await client.post(f"{stack.url('trigger')}/runs", headers=ADMIN, json={
            "orchestration": "employee-onboarding",
            "inputs": {"payroll_url": f"{hooks.url}/payroll",
                       "welcome_webhook_url": f"{hooks.url}/welcome"},
            "record": {"object_type": "Employee", "record_id": employee,
                       "fields": {"employee_id": employee, "name": name,
                                  "email": f"{employee}@example.com", "department": "R&D"}},
        })
        assert started.status_code == 202, started.text
        return str(started.json()["run_id"])


async def item_of(guide: str, run_id: str, step: str) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.get(f"{guide}/work", params={"scope": "all"}, headers=ADMIN)
        return next((i for i in answer.json()
                     if i["run_id"] == run_id and i["step"] == step), None)
    return dict(await wait_for(found, timeout=30))


async def complete_by_api(guide: str, token: str, item_id: str, values: dict[str, Any]) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        done = await client.post(f"{guide}/work/{item_id}/complete", json={"values": values},
                                 headers={"Authorization": f"Bearer {token}"})
        assert done.status_code == 200, done.text


async def test_hr_completes_the_form_and_it_sees_the_laptop_without_a_reload(
    stack: ServiceStack, guide: str, tokens: dict[str, str], hooks: WebhookReceiver,
    people: dict[str, Any],
) -> None:
    # IT's page is open before there is anything for IT.
    ivan = await sign_in(people, "ivan", tokens["ivan"])
    await ivan.evaluate("window.notReloaded = true")
    laptop_card = ivan.locator(".card", has_text="Prepare a laptop")
    assert await laptop_card.count() == 0

    await start_onboarding(stack, hooks, "e1001", "Ada Novak")
    hana = await sign_in(people, "hana", tokens["hana"], screenshot="sign-in")
    form_card = hana.locator(".card", has_text="Confirm the start date and equipment")
    await expect(form_card).to_be_visible(timeout=30_000)  # arrives by polling at the latest
    await assert_labelled(hana)
    await shoot(hana, "my-work")

    await hana.get_by_role("link", name="Confirm the start date and equipment").click()
    await expect(hana.get_by_role("heading", level=1)).to_have_text(
        "Confirm the start date and equipment")
    await expect(hana.get_by_text("Ada Novak")).to_be_visible()  # the record
    await assert_labelled(hana)
    await shoot(hana, "item")

    # Only the start date: the other two fields are refused, each next to its input.
    await hana.get_by_label("Start date").fill("2027-01-04")
    await hana.get_by_role("button", name="Complete").click()
    summary = hana.get_by_role("alert")
    await expect(summary).to_contain_text("Laptop model is required")
    await expect(summary).to_contain_text("Desk needed is required")
    await expect(hana.get_by_label("Laptop model")).to_have_attribute("aria-invalid", "true")
    await expect(hana.locator("#field-1-error")).to_have_text("Error: Laptop model is required")
    await expect(hana.get_by_label("Start date")).to_have_value("2027-01-04")  # kept
    assert await hana.evaluate("document.activeElement.className") == "error-summary"
    await shoot(hana, "form-errors")

    # The error summary's link leads to the field; the rest is done with the keyboard.
    await summary.get_by_role("link", name="Laptop model is required").click()
    await expect(hana.get_by_label("Laptop model")).to_be_focused()
    await hana.get_by_label("Laptop model").select_option("developer")
    await hana.keyboard.press("Tab")
    await expect(hana.get_by_role("radio", name="Yes")).to_be_focused()
    await hana.keyboard.press("ArrowRight")  # radios move with the arrow keys
    await expect(hana.get_by_role("radio", name="No")).to_be_checked()
    await hana.get_by_role("button", name="Complete").focus()
    await hana.keyboard.press("Enter")
    await hana.wait_for_url("**/ui/work?notice=completed**")
    await expect(hana.get_by_role("status").first).to_contain_text("has left your list")
    await expect(form_card).to_have_count(0)

    # IT's page, never reloaded, shows the laptop once the run reaches provisioning.
    await expect(laptop_card).to_be_visible(timeout=30_000)
    assert await ivan.evaluate("window.notReloaded") is True
    await expect(laptop_card.locator(".badge")).to_have_text("Due soon")  # due in a day
    await expect(ivan.locator("#work-status")).to_contain_text("1 item")
    await shoot(ivan, "new-work")


async def test_a_manager_rejects_and_the_timeline_shows_the_route_back(
    stack: ServiceStack, guide: str, tokens: dict[str, str], hooks: WebhookReceiver,
    people: dict[str, Any],
) -> None:
    run_id = await start_onboarding(stack, hooks, "e1002", "Ben Carter")  # Sofia manages Ben
    form = await item_of(guide, run_id, "hr_form")
    await complete_by_api(guide, tokens["hana"], form["id"], {
        "start_date": "2027-02-01", "laptop_model": "standard", "desk_needed": False})
    laptop = await item_of(guide, run_id, "laptop")
    await complete_by_api(guide, tokens["ivan"], laptop["id"], {"serial_number": "SN-9001"})

    sofia = await sign_in(people, "sofia", tokens["sofia"])
    approval = sofia.get_by_role("link", name="Approve the onboarding of Ben Carter")
    await expect(approval).to_be_visible(timeout=30_000)
    await approval.click()
    await expect(sofia.get_by_role("button", name="Approve")).to_be_visible()
    await assert_labelled(sofia)
    await sofia.get_by_label("Comment (optional)").fill("The 1st of February is a holiday")
    await sofia.get_by_role("button", name="Reject").click()
    await sofia.wait_for_url("**/ui/work?notice=rejected**")
    await expect(sofia.get_by_role("status").first).to_contain_text("Rejected")

    # The timeline: back to HR, and the HR queue holds the ball again.
    await sofia.goto(f"/ui/work/{approval_id(run_id)}")
    await sofia.get_by_role("link", name="the run's timeline").click()
    back = sofia.locator(".path-back")
    for _ in range(60):
        if await back.count():
            break
        await asyncio.sleep(0.5)
        await sofia.reload()
    await expect(back).to_contain_text(
        "Back to stage hr after manager_approval was rejected (visit 2)")
    await expect(sofia.locator(".path")).to_contain_text(
        "Step manager_approval rejected by Sofia Reyes: “The 1st of February is a holiday”")
    hr_stage = sofia.locator(".stage", has=sofia.get_by_role("heading", name="hr"))
    await expect(hr_stage).to_contain_text("visited 2 times")
    ball = sofia.locator(".now")
    for _ in range(30):  # the new HR item is created right after the stage is entered
        if "the HR queue" in await ball.inner_text():
            break
        await asyncio.sleep(0.5)
        await sofia.reload()
    await expect(ball).to_contain_text("the HR queue")
    await expect(ball).to_contain_text("hr / hr_form")
    await shoot(sofia, "timeline")


def approval_id(run_id: str) -> str:
    return f"{run_id}:manager_approval:1"


async def test_a_sign_in_link_signs_in_and_leaves_no_token_in_the_address_bar(
    guide: str, tokens: dict[str, str], people: dict[str, Any],
) -> None:
    page: Page = await people["open"]("hana by link")
    await page.goto(f"/ui/login#token={tokens['hana']}")
    await page.wait_for_url("**/ui/work")
    await expect(page.get_by_role("heading", name="My work")).to_be_visible()
    assert "token" not in page.url


async def test_one_user_cannot_open_anothers_item(
    stack: ServiceStack, guide: str, tokens: dict[str, str], people: dict[str, Any],
) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        started = await client.post(f"{stack.url('trigger')}/runs", headers=ADMIN,
                                    json={"orchestration": "browser-private"})
        assert started.status_code == 202, started.text
    run_id = str(started.json()["run_id"])
    item = await item_of(guide, run_id, "personal")

    leo = await sign_in(people, "leo", tokens["leo"])
    await expect(leo.get_by_text("Hana's personal task")).to_have_count(0)
    answer = await leo.goto(f"/ui/work/{item['id']}")
    assert answer is not None and answer.status == 404
    await expect(leo.get_by_role("heading", level=1)).to_have_text("Not found")
    await expect(leo.get_by_text("Hana's personal task")).to_have_count(0)
    run = await leo.goto(f"/ui/runs/{run_id}")
    assert run is not None and run.status == 404

    hana = await sign_in(people, "hana", tokens["hana"])
    mine = await hana.goto(f"/ui/work/{item['id']}")
    assert mine is not None and mine.status == 200
    await expect(hana.get_by_role("heading", level=1)).to_have_text("Hana's personal task")


async def test_an_admin_reassigns_from_the_queue_view_and_sees_stuck_runs(
    stack: ServiceStack, guide: str, tokens: dict[str, str], people: dict[str, Any],
) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        started = await client.post(f"{stack.url('trigger')}/runs", headers=ADMIN,
                                    json={"orchestration": "browser-private"})
    run_id = str(started.json()["run_id"])
    item = await item_of(guide, run_id, "personal")

    dana = await sign_in(people, "dana", tokens["dana"])
    await dana.get_by_role("link", name="Queues").click()
    await expect(dana.get_by_role("heading", name="Queues")).to_be_visible()
    await assert_labelled(dana)
    await shoot(dana, "queue")
    row = dana.locator("tr", has=dana.locator(f"input[value='{item['id']}']"))
    await row.get_by_role("checkbox").check()
    await dana.get_by_label("To a").select_option("user")
    await dana.get_by_label("Who").fill("hugo")
    await dana.get_by_label("Reason (optional)").fill("Hana is on leave")
    await dana.get_by_role("button", name="Reassign").click()
    await expect(dana.locator(".results")).to_contain_text("Reassigned 1 of 1")
    async with httpx.AsyncClient(timeout=10) as client:
        stored = (await client.get(f"{guide}/work/{item['id']}", headers=ADMIN)).json()
    assert (stored["assignee_kind"], stored["assignee"]) == ("user", "hugo")

    await dana.get_by_role("link", name="Stuck runs").click()
    await expect(dana.get_by_role("heading", name="Stuck runs")).to_be_visible()
    await expect(dana.locator(f"a[href='/ui/runs/{run_id}']")).to_be_visible()
    await assert_labelled(dana)
    await shoot(dana, "stuck")
    await dana.locator(f"a[href='/ui/runs/{run_id}']").click()
    await expect(dana.locator(".now")).to_contain_text("Hugo Lindqvist")


async def test_pages_fit_a_phone_and_work_with_the_keyboard(
    stack: ServiceStack, guide: str, tokens: dict[str, str], people: dict[str, Any],
) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        started = await client.post(f"{stack.url('trigger')}/runs", headers=ADMIN,
                                    json={"orchestration": "browser-private"})
    run_id = str(started.json()["run_id"])
    item = await item_of(guide, run_id, "personal")
    hana = await sign_in(people, "hana", tokens["hana"], width=390, height=844)
    await expect(hana.locator(f"[data-item-id='{item['id']}']")).to_be_visible(timeout=30_000)
    for path in ("/ui/work", f"/ui/work/{item['id']}", f"/ui/runs/{run_id}"):
        await hana.goto(path)
        overflow = await hana.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{path} is wider than a phone by {overflow}px"
    await hana.goto("/ui/work")
    await shoot(hana, "phone")

    await hana.keyboard.press("Tab")
    await expect(hana.get_by_role("link", name="Skip to content")).to_be_focused()
    await hana.keyboard.press("Enter")
    assert await hana.evaluate("document.activeElement.id") == "main"
    await hana.keyboard.press("Tab")
    focused = await hana.evaluate("document.activeElement.id")
    assert focused == "status"  # the first control after the skip link is in the content
    # A link keeps the keyboard focus when new work swaps the list in under it.
    link = hana.locator(f"[data-item-id='{item['id']}'] a")
    await link.focus()
    focused_id = await hana.evaluate("document.activeElement.id")
    personal = hana.locator(".card", has_text="Hana's personal task")
    before = await personal.count()
    async with httpx.AsyncClient(timeout=10) as client:
        another = await client.post(f"{stack.url('trigger')}/runs", headers=ADMIN,
                                    json={"orchestration": "browser-private"})
        assert another.status_code == 202, another.text
    await expect(personal).to_have_count(before + 1, timeout=30_000)
    assert await hana.evaluate("document.activeElement.id") == focused_id
    await hana.keyboard.press("Enter")
    await expect(hana.get_by_role("heading", level=1)).to_have_text("Hana's personal task")
    assert item["id"] in hana.url.replace("%3A", ":")
