"""The lean path for completing a work item answers exactly as the FastAPI route does
(services/assignment/completing.py, decision 39).

The same requests go to the service's app with the lean path and to the same app without
it: status, headers and body bytes must be equal, and the lean path's counts say which of
them it answered itself, so a change that makes it step aside silently fails here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from assignment_builders import DIRECTORY, FORM, given, request
from fastapi import Request

from services.assignment.api import work_router
from services.assignment.completing import CompletionFastPath
from services.assignment.core import Claim, Directory
from services.assignment.core.commands import Command, Complete
from services.assignment.core.rejection import FieldError, Rejection
from services.assignment.guide import Outcome
from shared.auth import UNKNOWN, Authenticator, Principal, hash_token
from shared.http_guard import MAX_BODY_BYTES, RequestGuard
from shared.runtime import Runtime
from shared.settings import ServiceSettings

ITEM = given(request("group", "hr", form=FORM, record={"id": "r-1", "note": "naïve ✓"}),
             Claim("ann"))
REJECTIONS = {
    "gone": Rejection("work item 'gone' not found", "not_found"),
    "theirs": Rejection("only the claimer may complete it", "forbidden"),
    "done": Rejection("the work item is already completed", "conflict"),
    "bad-form": Rejection("the form is invalid", "invalid",
                          (FieldError("laptop.model", "'pc' is not one of ['mac']"),)),
}
ANN = Principal("ann", groups=frozenset({"hr"}))
TOKENS: dict[str, tuple[datetime | None, Principal | str]] = {
    "t-ann": (None, ANN),
    "t-old": (datetime(2020, 1, 1, tzinfo=UTC), ANN),
    "t-revoked": (None, "the token was revoked"),
}


class Access:
    """Token facts from a dict; "t-slow" finds the access topic out of reach."""

    async def resolve(self, digest: str, *, catch_up: bool = True
                      ) -> tuple[datetime | None, Principal | str]:
        if digest == hash_token("t-slow"):
            raise TimeoutError
        for token, facts in TOKENS.items():
            if hash_token(token) == digest:
                return facts
        return None, UNKNOWN


@dataclass
class Guide:
    """The Work Guide's answers by item id; it records the commands it was given."""

    commands: list[tuple[str, Command]]

    async def directory_for(self, who: Principal) -> Directory:
        return DIRECTORY

    async def act(self, item_id: str, command: Command, directory: Directory) -> Outcome:
        self.commands.append((item_id, command))
        if item_id == "boom":
            raise RuntimeError("secret internals")
        if item_id in REJECTIONS:
            return Outcome(None, REJECTIONS[item_id])
        return Outcome(ITEM.model_copy(update={"updated_at": datetime(2025, 3, 3, tzinfo=UTC)}))


class RoutedAuthenticator(Authenticator):
    """Counts the token checks FastAPI's dependency solving asks for."""

    routed = 0

    async def principal(self, request: Request) -> Principal:
        self.routed += 1
        return await super().principal(request)


def service_app(guide: Guide, auth: Authenticator, *, lean: bool) -> Any:
    """The assignment service's HTTP app as build() wires it, with or without the lean path."""
    rt = Runtime(ServiceSettings(service_name="assignment-test"), title="t", default_port=1)
    rt.http.include_router(work_router(guide, auth))  # type: ignore[arg-type]
    if lean:
        rt.add_guarded_middleware(CompletionFastPath, guide=guide, auth=auth)
    return rt.http


def lean_path(app: Any) -> CompletionFastPath:
    """The lean path in the app's middleware stack, found behind the request guard."""
    layer, guarded = app.middleware_stack, False
    while layer is not None:
        guarded = guarded or isinstance(layer, RequestGuard)
        if isinstance(layer, CompletionFastPath):
            assert guarded, "the lean path must run inside the request guard"
            return layer
        layer = getattr(layer, "app", None)
    raise AssertionError("no lean path in the stack")


@dataclass
class Apps:
    lean: httpx.AsyncClient
    routed: httpx.AsyncClient
    app: Any
    guides: tuple[Guide, Guide]
    auth: RoutedAuthenticator

    async def both(self, method: str, path: str, **options: Any
                   ) -> tuple[httpx.Response, tuple[int, int]]:
        """The lean app's answer, checked equal to the routed one's, and what the lean path
        counted for it: (answered, handed on)."""
        before, routed = self.counts(), self.auth.routed
        lean = await self.lean.request(method, path, **options)
        if self.counts()[0] > before[0]:  # answered without FastAPI's dependencies
            assert self.auth.routed == routed
        routed = await self.routed.request(method, path, **options)
        assert (lean.status_code, lean.headers.raw, lean.content) == (
            routed.status_code, routed.headers.raw, routed.content)
        assert self.guides[0].commands == self.guides[1].commands
        after = self.counts()
        return lean, (after[0] - before[0], after[1] - before[1])

    def counts(self) -> tuple[int, int]:
        if self.app.middleware_stack is None:
            return 0, 0
        path = lean_path(self.app)
        return path.taken, path.handed_on


@pytest.fixture
async def apps() -> AsyncIterator[Apps]:
    guides = (Guide([]), Guide([]))
    auth = RoutedAuthenticator(Access(), None)
    lean = service_app(guides[0], auth, lean=True)
    routed = service_app(guides[1], Authenticator(Access(), None), lean=False)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(lean, raise_app_exceptions=False),
                          base_url="http://guide") as lean_client,
        httpx.AsyncClient(transport=httpx.ASGITransport(routed, raise_app_exceptions=False),
                          base_url="http://guide") as routed_client,
    ):
        yield Apps(lean_client, routed_client, lean, guides, auth)


ANN_TOKEN = {"Authorization": "Bearer t-ann"}
VALUES = {"start_date": "2025-04-01", "laptop": {"model": "mac"}, "notes": "naïve ✓"}


async def test_a_completion_is_answered_by_the_lean_path_as_the_route_answers_it(
        apps: Apps) -> None:
    answer, counted = await apps.both("POST", "/work/run-1:collect:1/complete",
                                      json={"values": VALUES}, headers=ANN_TOKEN)

    assert answer.status_code == 200 and counted == (1, 0)
    assert answer.json()["id"] == ITEM.id and answer.json()["history"]
    assert apps.guides[0].commands == [("run-1:collect:1", Complete("ann", VALUES))]


async def test_the_values_may_be_left_out_and_the_item_id_percent_encoded(apps: Apps) -> None:
    answer, counted = await apps.both("POST", "/work/run%3A1%20x/complete", json={},
                                      headers=ANN_TOKEN)

    assert answer.status_code == 200 and counted == (1, 0)
    assert apps.guides[0].commands == [("run:1 x", Complete("ann", {}))]


@pytest.mark.parametrize(("item_id", "status"), [
    ("gone", 404), ("theirs", 403), ("done", 409), ("bad-form", 422)])
async def test_a_rejection_is_the_same_problem(apps: Apps, item_id: str, status: int) -> None:
    answer, counted = await apps.both("POST", f"/work/{item_id}/complete",
                                      json={"values": {"laptop": {"model": "pc"}}},
                                      headers=ANN_TOKEN)

    assert answer.status_code == status and counted == (1, 0)
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == REJECTIONS[item_id].code


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401), ({"Authorization": "Basic t-ann"}, 401), ({"Authorization": "Bearer  "}, 401),
    ({"Authorization": "Bearer nobody"}, 401), ({"Authorization": "Bearer t-old"}, 401),
    ({"Authorization": "Bearer t-revoked"}, 401), ({"Authorization": "bearer t-ann"}, 200),
    ({"Authorization": "Bearer t-slow"}, 503)])
async def test_a_caller_is_checked_the_same_way(
        apps: Apps, headers: dict[str, str], status: int) -> None:
    answer, counted = await apps.both("POST", "/work/i1/complete", json={"values": {}},
                                      headers=headers)

    assert answer.status_code == status and counted == (1, 0)
    if status == 401:
        assert answer.headers["www-authenticate"] == "Bearer"
        assert apps.guides[0].commands == []


async def test_an_unexpected_failure_is_the_same_500(apps: Apps) -> None:
    answer, counted = await apps.both("POST", "/work/boom/complete", json={},
                                      headers=ANN_TOKEN)

    assert answer.status_code == 500 and counted == (1, 0)
    assert "secret" not in answer.text


JSON = {"Content-Type": "application/json", **ANN_TOKEN}


@pytest.mark.parametrize(("content", "headers", "status"), [
    (b'{"values": ', JSON, 422),  # bad syntax: the route says where
    (b'{"values": ', {"Content-Type": "application/json"}, 422),  # ... before the token
    (b'{"values": [1]}', JSON, 422),
    (b'{"values": [1]}', {"Content-Type": "application/json"}, 401),  # the token first
    (b'{"values": {"a": 1}, "other": 2}', {"Content-Type": "application/json; charset=utf-8",
                                           **ANN_TOKEN}, 200),
    (b'[]', JSON, 422), (b'null', JSON, 422), (b'', JSON, 422), (b'"x"', JSON, 422),
    (b'{"values": {}}', {"Content-Type": "text/plain", **ANN_TOKEN}, 422),
    (b'{"values": {}}', {"Content-Type": "application/merge-patch+json", **ANN_TOKEN}, 200),
    (b'{"values": {}}', ANN_TOKEN, 422),  # no content type
    (b'\xff{"values": {}}', JSON, 400),  # not UTF-8
])
async def test_any_other_body_is_handed_to_the_route(
        apps: Apps, content: bytes, headers: dict[str, str], status: int) -> None:
    answer, counted = await apps.both("POST", "/work/i1/complete", content=content,
                                      headers=headers)

    assert answer.status_code == status and counted == (0, 1)


async def test_a_body_in_another_unicode_encoding_is_read_as_the_route_reads_it(
        apps: Apps) -> None:
    for encoding in ("utf-16", "utf-32-be", "utf-8-sig"):
        content = json.dumps({"values": VALUES}).encode(encoding)
        answer, counted = await apps.both("POST", "/work/i1/complete", content=content,
                                          headers=JSON)
        assert answer.status_code == 200 and counted == (1, 0), encoding


async def test_a_header_given_twice_is_handed_to_the_route(apps: Apps) -> None:
    for name, first, second in [("authorization", "Bearer nobody", "Bearer t-ann"),
                                ("content-type", "text/plain", "application/json")]:
        headers = [(name, first), (name, second)]
        if name == "authorization":
            headers.append(("content-type", "application/json"))
        else:
            headers.append(("authorization", "Bearer t-ann"))
        answer, counted = await apps.both("POST", "/work/i1/complete", content=b"{}",
                                          headers=headers)
        assert counted == (0, 1), answer.text


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/work/i1/complete"), ("PUT", "/work/i1/complete"), ("HEAD", "/work/i1/complete"),
    ("OPTIONS", "/work/i1/complete"), ("POST", "/work/i1/complete/"),
    ("POST", "/work/a/b/complete"), ("POST", "/work//complete"), ("POST", "/work/complete"),
    ("POST", "/work/i1/claim"), ("POST", "/work/i1/completes")])
async def test_other_methods_and_paths_are_the_routes(
        apps: Apps, method: str, path: str) -> None:
    _, counted = await apps.both(method, path, json={}, headers=ANN_TOKEN)

    assert counted == (0, 0)


async def test_the_guard_still_answers_first(apps: Apps) -> None:
    """Bodies the request guard refuses never reach the lean path."""
    for content, status in [(b'{"values": {"x": NaN}}', 422),
                            (b'{"values": {"n": 99999999999999999999}}', 422),
                            (b"{" + b" " * MAX_BODY_BYTES + b"}", 413)]:
        answer, counted = await apps.both("POST", "/work/i1/complete", content=content,
                                          headers=JSON)
        assert answer.status_code == status and counted == (0, 0)


async def test_the_route_stays_in_the_openapi_document(apps: Apps) -> None:
    answer, _ = await apps.both("GET", "/openapi.json")

    operation = answer.json()["paths"]["/work/{item_id}/complete"]["post"]
    assert operation["summary"] == "Submit the form (validated against its schema)"


def test_the_service_answers_completions_on_the_lean_path() -> None:
    """build() wires it (behind the guard), with the service's own guide and token desk."""
    from services.assignment.__main__ import build

    runtime = build()
    runtime.http.middleware_stack = runtime.http.build_middleware_stack()
    lean = lean_path(runtime.http)
    assert lean.auth.__class__.__name__ == "TokenDesk"


def test_an_answer_is_rendered_as_the_route_renders_it() -> None:
    """The bytes equal json.dumps of the JSON-mode dump in the compact form (a check that
    the equal-bytes tests above compare something: datetimes, unicode, nesting)."""
    from services.assignment.api import detail
    from services.assignment.completing import ANSWER

    body = detail(ITEM, datetime(2025, 3, 4, tzinfo=UTC) + timedelta(days=1))
    rendered = ANSWER.dump_json(body, by_alias=True)
    expected = json.dumps(ANSWER.dump_python(body, mode="json"), ensure_ascii=False,
                          separators=(",", ":")).encode()
    assert rendered == expected


def test_the_history_is_rendered_as_each_entry_dumps_itself() -> None:
    from services.assignment.api import detail
    from services.assignment.core import Comment, Delegate, Reassign

    item = given(request("group", "hr", form=FORM), Claim("ann"), Delegate("ann", "gary"),
                 Comment("ann", "naïve ✓"), Reassign("dave", "user", "bob", "cover"))

    rendered = detail(item, datetime(2025, 3, 4, tzinfo=UTC))["history"]
    assert rendered == [entry.model_dump(mode="json") for entry in item.history]
    assert len(rendered) > 6 and {type(e["at"]) for e in rendered} == {str}
