"""The trigger's API: who may validate, publish and start; typed inputs; work off the loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request

from services.trigger import api
from shared.auth import Principal
from shared.definitions.model import Definition
from shared.definitions.store import UnknownDefinition

PEOPLE = {
    "admin": Principal("root", frozenset({"admin"})),
    "designer": Principal("dee", frozenset({"designer"})),
    "hr": Principal("hana", frozenset(), frozenset({"hr"})),
    "other": Principal("otto"),
}
LOCKED = """
name: payroll
starters: {groups: [hr], users: [otto_not]}
inputs:
  payroll_url: {type: string, required: true, pattern: "^https://payroll[.]example/"}
  count: {type: integer}
stages:
  - name: only
    steps: [{name: call, action: noop, timeout: 10m}]
"""
OPEN = "name: legacy\nstages: [{name: only, steps: [{name: call, action: noop}]}]\n"


class People:
    async def principal(self, request: Request) -> Principal:
        who = request.headers.get("authorization", "").removeprefix("Bearer ")
        if who not in PEOPLE:
            raise HTTPException(401, "a bearer token is required")
        return PEOPLE[who]


class Store:
    def __init__(self) -> None:
        self.published: dict[str, Definition] = {}

    async def publish(self, definition: Definition, **_: Any) -> Definition:
        pinned = definition.model_copy(update={"version": 1})
        self.published[definition.name] = pinned
        return pinned

    async def get(self, name: str, version: int | None = None) -> Definition:
        if name not in self.published:
            raise UnknownDefinition(name)
        return self.published[name]


class Nothing:
    def published(self, definition: Definition) -> None:
        pass

    async def publish(self, envelopes: Any) -> None:
        self.sent = list(envelopes)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(api.definitions_router(
        Store(), Nothing(), Nothing(), People(),  # type: ignore[arg-type]
        frozenset({"noop", "http"}), timedelta(hours=1)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://trigger") as client:
        yield client


def as_(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {who}"}


async def test_validate_and_publish_need_the_admin_or_designer_role(
        client: httpx.AsyncClient) -> None:
    for path in ("/definitions/validate", "/definitions"):
        refused = await client.post(path, content=OPEN, headers=as_("hr"))
        assert refused.status_code == 403, refused.text
    assert (await client.post("/definitions/validate", content=OPEN,
                              headers=as_("designer"))).status_code == 200
    assert (await client.post("/definitions", content=OPEN,
                              headers=as_("admin"))).status_code == 201


async def test_publish_answers_with_warnings_and_refuses_overlong_timeouts(
        client: httpx.AsyncClient) -> None:
    literal = OPEN.replace("action: noop}", "action: http, inputs: {url: 'https://x.example',"
                           " headers: {Authorization: Bearer abc}}}")
    answer = await client.post("/definitions", content=literal, headers=as_("designer"))
    assert answer.status_code == 201
    assert [w["path"] for w in answer.json()["warnings"]] == [
        "stages[0](only).steps[0](call).inputs.headers.Authorization"]
    slow = OPEN.replace("action: noop}", "action: noop, timeout: 3d}")
    refused = await client.post("/definitions", content=slow, headers=as_("designer"))
    assert refused.status_code == 422
    assert "stages[0](only).steps[0](call).timeout" in refused.text


async def test_definitions_are_checked_off_the_event_loop(
        client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[bool] = []
    real = api.validate_definition

    def recording(*args: Any, **kwargs: Any) -> Definition:
        try:
            asyncio.get_running_loop()
            threads.append(False)  # on the event loop's thread
        except RuntimeError:
            threads.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "validate_definition", recording)
    for path in ("/definitions/validate", "/definitions"):
        assert (await client.post(path, content=OPEN, headers=as_("admin"))).is_success
    assert threads == [True, True]


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= set(body) and body["status"] == status
    return body


async def test_only_starters_may_start_and_inputs_must_fit(client: httpx.AsyncClient) -> None:
    assert (await client.post("/definitions", content=LOCKED, headers=as_("admin"))).is_success
    good = {"orchestration": "payroll", "inputs": {"payroll_url": "https://payroll.example/1"}}
    refused = await client.post("/runs", json=good, headers=as_("other"))
    assert "may not start 'payroll'" in assert_problem(refused, 403)["detail"]
    assert (await client.post("/runs", json=good, headers=as_("hr"))).status_code == 202
    assert (await client.post("/runs", json=good, headers=as_("admin"))).status_code == 202

    bad = {"orchestration": "payroll",
           "inputs": {"payroll_url": "http://169.254.169.254/latest", "count": "3", "x": 1}}
    problem = assert_problem(await client.post("/runs", json=bad, headers=as_("hr")), 422)
    assert {e["input"] for e in problem["errors"]} == {"payroll_url", "count", "x"}
    missing = await client.post("/runs", json={"orchestration": "payroll"}, headers=as_("hr"))
    assert "payroll_url: is required" in assert_problem(missing, 422)["detail"]


async def test_a_definition_without_starters_or_inputs_works_as_before(
        client: httpx.AsyncClient) -> None:
    assert (await client.post("/definitions", content=OPEN, headers=as_("admin"))).is_success
    started = await client.post("/runs", json={"orchestration": "legacy",
                                               "inputs": {"anything": [1, {"a": 2}]}},
                                headers=as_("other"))
    assert started.status_code == 202
