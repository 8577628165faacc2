"""Every service's errors are RFC 9457 problem details (shared/problems.py via the runtime)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from http import HTTPStatus

import httpx
import pytest
from fastapi import HTTPException, Query
from pydantic import BaseModel

from shared.runtime import Runtime
from shared.settings import ServiceSettings

PROBLEM = "application/problem+json"


class Body(BaseModel):
    amount: int


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """A service's app as the runtime builds it (no lifespan: no Kafka or MongoDB needed)."""
    rt = Runtime(ServiceSettings(service_name="problems-test"), title="t", default_port=1)

    @rt.http.get("/text")
    async def text() -> None:
        raise HTTPException(404, "no run r1")

    @rt.http.get("/rejection")
    async def rejection() -> None:
        raise HTTPException(422, {"reason": "the form is invalid", "code": "invalid",
                                  "errors": [{"field": "amount", "message": "too small"}]})

    @rt.http.get("/issues")
    async def issues() -> None:
        raise HTTPException(422, {"message": "the definition is invalid",
                                  "issues": [{"path": "stages[0]", "message": "no steps"}]})

    @rt.http.post("/validated")
    async def validated(body: Body, limit: int = Query(1, ge=1)) -> dict[str, int]:
        return {"amount": body.amount, "limit": limit}

    @rt.http.get("/crash")
    async def crash() -> None:
        raise RuntimeError("secret internals")

    transport = httpx.ASGITransport(app=rt.http, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        yield client


async def test_a_text_detail_becomes_a_problem(client: httpx.AsyncClient) -> None:
    answer = await client.get("/text")
    assert answer.status_code == 404 and answer.headers["content-type"] == PROBLEM
    assert answer.json() == {"type": "about:blank",
                             "title": "Not Found", "status": 404, "detail": "no run r1"}


async def test_rejections_and_definition_issues_keep_their_field_problems(
    client: httpx.AsyncClient,
) -> None:
    rejection = (await client.get("/rejection")).json()
    assert rejection["detail"] == "the form is invalid" and rejection["code"] == "invalid"
    assert rejection["errors"] == [{"field": "amount", "message": "too small"}]
    issues = (await client.get("/issues")).json()
    assert issues["status"] == 422 and issues["detail"] == "the definition is invalid"
    assert issues["errors"] == [{"path": "stages[0]", "message": "no steps"}]


async def test_request_validation_is_a_problem_with_an_errors_list(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.post("/validated", params={"limit": 0}, json={"amount": "many"})
    assert answer.status_code == 422 and answer.headers["content-type"] == PROBLEM
    body = answer.json()
    assert body["title"] == HTTPStatus(422).phrase and body["status"] == 422
    assert {e["field"] for e in body["errors"]} == {"query.limit", "amount"}


async def test_the_request_guard_refuses_with_a_problem(client: httpx.AsyncClient) -> None:
    answer = await client.post("/validated", content=b'{"amount": NaN}',
                         headers={"content-type": "application/json"})
    assert answer.status_code == 422 and answer.headers["content-type"] == PROBLEM
    assert "NaN" in answer.json()["detail"]


async def test_an_unexpected_error_is_a_problem_that_tells_nothing_of_the_internals(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.get("/crash")
    assert answer.status_code == 500 and answer.headers["content-type"] == PROBLEM
    assert "secret" not in answer.text and answer.json()["status"] == 500
