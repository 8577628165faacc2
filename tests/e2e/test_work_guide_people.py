"""People at work: the onboarding example driven through the Work Guide API by simulated
people, a reminder and an escalation on a shortened clock, authorization, and every
notification arriving exactly once in a real SMTP server and chat webhook, also when the
notification service is killed and restarted.
"""

from __future__ import annotations

import asyncio
import collections
import email
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml
from e2e.conftest import ROOT, topic_messages, wait_for
from receivers import MailSink, WebhookReceiver, smtp_sink, webhook_receiver

from infra.stack import ServiceStack

pytestmark = pytest.mark.e2e

REMINDERS = """
name: it-ticket
stages:
  - name: triage
    steps:
      - name: fix_it
        kind: interactive
        title: Fix the printer
        assignee: {user: ivan}
        due: 2s
        reminders_before_due: [1s]
        escalation: {after_due: 1s, action: reassign_to_manager}
"""


@pytest.fixture(scope="module")
def mail() -> Iterator[MailSink]:
    with smtp_sink() as (sink, port):
        sink.port = port  # type: ignore[attr-defined]
        yield sink


@pytest.fixture(scope="module")
def hooks() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def stack_env(mail: MailSink, hooks: WebhookReceiver) -> dict[str, str]:
    return {
        "BATON_SMTP_HOST": "127.0.0.1", "BATON_SMTP_PORT": str(mail.port),  # type: ignore[attr-defined]
        "BATON_SMTP_SENDER": "Baton <baton@baton.test>",
        "BATON_CHAT_WEBHOOK_URL": f"{hooks.url}/chat",
        "BATON_RETRY_BASE_DELAY_SECONDS": "0.3",
        "BATON_LEASE_SECONDS": "2",
    }


ADMIN = {"Authorization": "Bearer bt_e2e_admin_token"}
RUNS_PORT: list[int] = []


@pytest.fixture(scope="module")
async def people(stack: ServiceStack) -> dict[str, dict[str, str]]:
    """The example directory loaded, and a token for each person the tests need."""
    admin = ADMIN
    RUNS_PORT[:] = [stack.ports["stage-coordinator"]]
    directory = yaml.safe_load((ROOT / "examples" / "directory.yaml").read_text())
    url = stack.url("assignment")
    async with httpx.AsyncClient(timeout=10) as client:
        loaded = await client.put(f"{url}/directory", json=directory, headers=admin)
        assert loaded.status_code == 200, loaded.text
        headers = {"admin": admin}
        for user in ("hana", "hugo", "ivan", "irene", "fatima", "leo"):
            issued = await client.post(f"{url}/tokens", json={"user_id": user}, headers=admin)
            assert issued.status_code == 201, issued.text
            headers[user] = {"Authorization": f"Bearer {issued.json()['token']}"}
    return headers


async def my_items(client: httpx.AsyncClient, url: str, who: dict[str, str],
                   run_id: str, step: str) -> list[dict[str, Any]]:
    response = await client.get(f"{url}/work", headers=who)
    assert response.status_code == 200, response.text
    return [i for i in response.json() if i["run_id"] == run_id and i["step"] == step]


async def item_for(client: httpx.AsyncClient, url: str, who: dict[str, str],
                   run_id: str, step: str) -> dict[str, Any]:
    async def appeared() -> list[dict[str, Any]]:
        return await my_items(client, url, who, run_id, step)
    try:
        items = await wait_for(appeared, timeout=30)
    except AssertionError:
        run = await client.get(f"{url.rsplit(':', 1)[0]}:{RUNS_PORT[0]}/runs/{run_id}",
                               headers=ADMIN)
        raise AssertionError(f"no {step} item; the run: {run.text[:3000]}") from None
    assert len(items) == 1, items
    return items[0]


async def run_doc(client: httpx.AsyncClient, stack: ServiceStack, run_id: str,
                  admin: dict[str, str]) -> dict[str, Any]:
    response = await client.get(f"{stack.url('stage-coordinator')}/runs/{run_id}", headers=admin)
    return response.json() if response.status_code == 200 else {}


def mails_by_event(mail: MailSink) -> collections.Counter[tuple[str, str]]:
    """SMTP transactions per (event, recipient): every copy the server accepted."""
    counted: collections.Counter[tuple[str, str]] = collections.Counter()
    for envelope in mail.messages:
        message = email.message_from_bytes(envelope.content)
        for rcpt in envelope.rcpt_tos:
            counted[(str(message["X-Baton-Event-Id"]), rcpt)] += 1
    return counted


def mailbox(mail: MailSink) -> collections.Counter[tuple[str, str]]:
    """Messages per (event, recipient) as a mailbox shows them: one per Message-ID.

    Mail stores and clients treat copies with one Message-ID as one message; Baton gives
    each delivery a stable Message-ID, so a copy sent again after a crash in the window
    between the server's 250 and the recorded outcome is the same message (decision 7).
    """
    seen: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
    for envelope in mail.messages:
        message = email.message_from_bytes(envelope.content)
        for rcpt in envelope.rcpt_tos:
            seen[(str(message["X-Baton-Event-Id"]), rcpt)].add(str(message["Message-ID"]))
    return collections.Counter({key: len(ids) for key, ids in seen.items()})


async def test_onboarding_run_done_by_people_through_the_work_guide(
    stack: ServiceStack, people: dict[str, dict[str, str]], mail: MailSink,
    hooks: WebhookReceiver, servers: Any,
) -> None:
    guide, admin = stack.url("assignment"), people["admin"]
    async with httpx.AsyncClient(timeout=10) as client:
        published = await client.post(f"{stack.url('trigger')}/definitions", headers=admin,
                                      content=(ROOT / "examples" / "onboarding.yaml").read_bytes())
        assert published.status_code == 201, published.text
        started = await client.post(f"{stack.url('trigger')}/runs", headers=admin, json={
            "orchestration": "employee-onboarding",
            "inputs": {"payroll_url": f"{hooks.url}/payroll",
                       "welcome_webhook_url": f"{hooks.url}/welcome"},
            "record": {"object_type": "Employee", "record_id": "e1001",
                       "fields": {"employee_id": "e1001", "name": "Ada Novak",
                                  "email": "ada.novak@example.com", "department": "R&D"}},
        })
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]

        # HR: the form is in the hr queue; Hana and Hugo see it, Leo (legal) does not.
        form = await item_for(client, guide, people["hana"], run_id, "hr_form")
        assert form["assignee_kind"] == "queue" and form["assignee"] == "hr"
        assert await my_items(client, guide, people["hugo"], run_id, "hr_form")
        assert not await my_items(client, guide, people["leo"], run_id, "hr_form")
        hidden = await client.get(f"{guide}/work/{form['id']}", headers=people["leo"])
        assert hidden.status_code == 404
        stolen = await client.post(f"{guide}/work/{form['id']}/complete", headers=people["leo"],
                                   json={"values": {"start_date": "2027-01-04"}})
        assert stolen.status_code == 404
        forbidden = await client.post(f"{guide}/work/{form['id']}/reassign",
                                      headers=people["hana"],
                                      json={"to_kind": "user", "to": "hana"})
        assert forbidden.status_code == 403

        shown = (await client.get(f"{guide}/work/{form['id']}", headers=people["hana"])).json()
        assert shown["record"]["name"] == "Ada Novak"
        assert shown["form"]["required"] == ["start_date", "laptop_model", "desk_needed"]

        invalid = await client.post(f"{guide}/work/{form['id']}/complete", headers=people["hana"],
                                    json={"values": {"start_date": "2027-01-04",
                                                     "laptop_model": "gaming"}})
        assert invalid.status_code == 422
        fields = {e["field"] for e in invalid.json()["errors"]}
        assert {"laptop_model", "desk_needed"} <= fields, invalid.json()

        claimed = await client.post(f"{guide}/work/{form['id']}/claim", headers=people["hana"])
        assert claimed.status_code == 200 and claimed.json()["claimed_by"] == "hana"
        taken = await client.post(f"{guide}/work/{form['id']}/claim", headers=people["hugo"])
        assert taken.status_code in (403, 409), taken.text
        done = await client.post(f"{guide}/work/{form['id']}/complete", headers=people["hana"],
                                 json={"values": {"start_date": "2027-01-04",
                                                  "laptop_model": "developer",
                                                  "desk_needed": True}})
        assert done.status_code == 200, done.text
        assert not await my_items(client, guide, people["hana"], run_id, "hr_form")

        # Provisioning: IT (a group) and facilities (a queue) in parallel, payroll called.
        laptop = await item_for(client, guide, people["ivan"], run_id, "laptop")
        desk = await item_for(client, guide, people["fatima"], run_id, "desk")
        short = await client.post(f"{guide}/work/{laptop['id']}/complete", headers=people["ivan"],
                                  json={"values": {"serial_number": "X1"}})
        assert short.status_code == 422
        for who, item, values in (("ivan", laptop, {"serial_number": "SN-4471"}),
                                  ("fatima", desk, {"location": "3rd floor, desk 12"})):
            answer = await client.post(f"{guide}/work/{item['id']}/complete", headers=people[who],
                                       json={"values": values})
            assert answer.status_code == 200, answer.text

        # The manager (Irene manages e1001) rejects: the run goes back to HR.
        approval = await item_for(client, guide, people["irene"], run_id, "manager_approval")
        assert approval["kind"] == "approval" and approval["title"] == (
            "Approve the onboarding of Ada Novak")
        rejected = await client.post(f"{guide}/work/{approval['id']}/reject",
                                     headers=people["irene"], json={"comment": "wrong start date"})
        assert rejected.status_code == 200, rejected.text
        again = await item_for(client, guide, people["hugo"], run_id, "hr_form")
        assert again["id"] != form["id"]
        await client.post(f"{guide}/work/{again['id']}/complete", headers=people["hugo"],
                          json={"values": {"start_date": "2027-01-11", "laptop_model": "developer",
                                           "desk_needed": False}})
        laptop2 = await item_for(client, guide, people["irene"], run_id, "laptop")
        await client.post(f"{guide}/work/{laptop2['id']}/complete", headers=people["irene"],
                          json={"values": {"serial_number": "SN-4471"}})
        approval2 = await item_for(client, guide, people["irene"], run_id, "manager_approval")
        approved = await client.post(f"{guide}/work/{approval2['id']}/approve",
                                     headers=people["irene"], json={"comment": "welcome aboard"})
        assert approved.status_code == 200, approved.text

        async def finished() -> dict[str, Any]:
            doc = await run_doc(client, stack, run_id, admin)
            return doc if doc.get("status") in ("completed", "error", "canceled") else {}
        run = await finished() or await wait_for(finished, timeout=30)
        assert run["status"] == "completed", run
        assert run["vars"]["laptop_serial"] == "SN-4471"

        # The completed item keeps its audit trail with old and new values.
        history = (await client.get(f"{guide}/work/{form['id']}", headers=admin)).json()["history"]
        claimed_entry = next(e for e in history if e["field"] == "claimed_by")
        assert (claimed_entry["old"], claimed_entry["new"], claimed_entry["actor"]) == (
            None, "hana", "hana")

    welcome = [body for path, _, body in hooks.requests if path.endswith("/welcome")]
    assert len(welcome) == 1 and "Ada Novak" in welcome[0]["text"]
    assert [p for p, _, _ in hooks.requests].count("/hooks/baton/payroll") == 2  # both passes

    # Hana and Hugo (the hr queue) were each told about the first form once: Hana by email,
    # Hugo by chat (he prefers it, and has a chat handle).
    events = await topic_messages(servers.kafka_bootstrap, "workitems.events", run_id=run_id)
    assigned = next(e for e in events if e["type"] == "WorkItemAssigned"
                    and e["payload"]["work_item_id"] == form["id"])

    def chats_to_hugo() -> list[str]:
        return [body["text"] for path, _, body in hooks.requests
                if path.endswith("/chat") and body.get("channel") == "@hugo"
                and "New work item" in body["text"]
                and f"/work/{quote(form['id'], safe='')}\n" in body["text"]]

    async def mailed() -> collections.Counter[tuple[str, str]]:
        counted = mails_by_event(mail)
        told = (assigned["event_id"], "hana@example.com") in counted and chats_to_hugo()
        return counted if told else collections.Counter()
    try:
        counted = await wait_for(mailed, timeout=30)
    except AssertionError:
        async with httpx.AsyncClient() as client:
            deliveries = await client.get(f"{stack.url('notification')}/deliveries",
                                          headers=people["admin"])
        raise AssertionError(
            f"mails {mails_by_event(mail)}; deliveries {deliveries.text[:3000]}") from None
    assert counted[(assigned["event_id"], "hana@example.com")] == 1
    assert len(chats_to_hugo()) == 1 and (assigned["event_id"], "hugo@example.com") not in counted
    assert max(counted.values()) == 1, [k for k, v in counted.items() if v > 1]


async def test_reminder_and_escalation_fire_on_a_short_clock(
    stack: ServiceStack, people: dict[str, dict[str, str]], mail: MailSink, servers: Any,
    tmp_path: Path,
) -> None:
    guide, admin = stack.url("assignment"), people["admin"]
    async with httpx.AsyncClient(timeout=10) as client:
        published = await client.post(f"{stack.url('trigger')}/definitions", headers=admin,
                                      content=REMINDERS.encode())
        assert published.status_code == 201, published.text
        started = await client.post(f"{stack.url('trigger')}/runs", headers=admin,
                                    json={"orchestration": "it-ticket"})
        run_id = started.json()["run_id"]
        item = await item_for(client, guide, people["ivan"], run_id, "fix_it")

        # Due in 2 s: a reminder at 1 s, then escalation to Ivan's manager (Irene) at 3 s.
        moved = await item_for(client, guide, people["irene"], run_id, "fix_it")
        assert moved["id"] == item["id"] and moved["assignee"] == "irene"
        assert not await my_items(client, guide, people["ivan"], run_id, "fix_it")
        detail = (await client.get(f"{guide}/work/{item['id']}", headers=people["irene"])).json()
        assert detail["escalated"] is True
        actions = [e["action"] for e in detail["history"]]
        assert "remind" in actions and "escalate" in actions

    events = await topic_messages(servers.kafka_bootstrap, "workitems.events", run_id=run_id)
    kinds = collections.Counter(e["type"] for e in events)
    assert kinds["WorkItemReminderDue"] == 1 and kinds["WorkItemEscalated"] == 1, kinds
    reminder = next(e for e in events if e["type"] == "WorkItemReminderDue")
    escalated = next(e for e in events if e["type"] == "WorkItemEscalated")

    async def mailed() -> bool:
        counted = mails_by_event(mail)
        return ((reminder["event_id"], "ivan@example.com") in counted
                and (escalated["event_id"], "irene@example.com") in counted)
    await wait_for(mailed, timeout=30)
    await asyncio.sleep(1.0)  # a late duplicate would show up now
    counted = mails_by_event(mail)
    assert counted[(reminder["event_id"], "ivan@example.com")] == 1
    assert counted[(escalated["event_id"], "irene@example.com")] == 1


async def test_notifications_arrive_once_when_the_notifier_is_killed_and_restarted(
    stack: ServiceStack, people: dict[str, dict[str, str]], mail: MailSink, servers: Any,
) -> None:
    admin = people["admin"]
    async with httpx.AsyncClient(timeout=10) as client:
        stack.kill_one("notification")
        run_ids = []
        for _ in range(5):
            started = await client.post(f"{stack.url('trigger')}/runs", headers=admin,
                                        json={"orchestration": "it-ticket"})
            run_ids.append(started.json()["run_id"])
        await asyncio.sleep(0.5)
        stack.start_one("notification")
        stack.wait_healthy("notification")
        await asyncio.sleep(0.3)
        stack.kill_one("notification")  # again, while it is delivering
        stack.start_one("notification")
        stack.wait_healthy("notification")

    assigned: list[str] = []
    for run_id in run_ids:
        events = await wait_for(lambda r=run_id: _assigned(servers, r), timeout=30)
        assigned.extend(events)

    async def all_mailed() -> bool:
        counted = mails_by_event(mail)
        return all((event_id, "ivan@example.com") in counted for event_id in assigned)
    await wait_for(all_mailed, timeout=45)
    await asyncio.sleep(1.0)
    shown, sent = mailbox(mail), mails_by_event(mail)
    assert [shown[(e, "ivan@example.com")] for e in assigned] == [1] * len(assigned)
    # A kill in the window after the server's 250 may send one copy again, never more.
    assert all(sent[(e, "ivan@example.com")] <= 2 for e in assigned), sent


async def _assigned(servers: Any, run_id: str) -> list[str]:
    events = await topic_messages(servers.kafka_bootstrap, "workitems.events", run_id=run_id)
    return [e["event_id"] for e in events if e["type"] == "WorkItemAssigned"]
