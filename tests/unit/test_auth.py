"""shared/auth.py: tokens expire, roles come from the directory, a cookie is no bearer token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import HTTPException, Request

from shared import auth
from shared.auth import Authenticator, hash_token


class FakeCollection:
    """The few calls the authenticator makes, on documents in a dict."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}

    @staticmethod
    def _matches(doc: dict[str, Any], query: dict[str, Any]) -> bool:
        return all(doc.get(key) == value for key, value in query.items())

    async def find_one(self, query: dict[str, Any], _: Any = None) -> dict[str, Any] | None:
        return next((dict(d) for d in self.docs.values() if self._matches(d, query)), None)

    async def insert_one(self, doc: dict[str, Any]) -> None:
        self.docs[doc["_id"]] = dict(doc)

    async def update_one(self, query: dict[str, Any], update: dict[str, Any]) -> Any:
        found = [d for d in self.docs.values() if self._matches(d, query)][:1]
        for doc in found:
            doc.update(update["$set"])
        return type("Result", (), {"matched_count": len(found)})()


@pytest.fixture
def db() -> dict[str, FakeCollection]:
    database = {auth.TOKENS: FakeCollection(), auth.USERS: FakeCollection()}
    database[auth.USERS].docs = {
        "dana": {"_id": "dana", "roles": ["admin"], "groups": ["hr_leads"], "queues": []},
        "hana": {"_id": "hana", "roles": [], "groups": [], "queues": ["hr"]},
    }
    return database


@pytest.fixture
def authenticator(db: dict[str, FakeCollection]) -> Authenticator:
    return Authenticator(db, "bt_bootstrap", token_lifetime=timedelta(days=30),  # type: ignore[arg-type]
                         session_lifetime=timedelta(hours=12))


def request(headers: dict[str, str] | None = None, cookie: str | None = None) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if cookie:
        raw.append((b"cookie", f"baton_token={cookie}".encode()))
    return Request({"type": "http", "method": "GET", "path": "/", "query_string": b"",
                    "headers": raw})


def bearer(token: str) -> Request:
    return request({"Authorization": f"Bearer {token}"})


async def refusal(authenticator: Authenticator, token: str) -> str:
    with pytest.raises(HTTPException) as refused:
        await authenticator.check(token)
    assert refused.value.status_code == 401
    return str(refused.value.detail)


async def test_roles_groups_and_queues_come_from_the_directory_when_checked(
    authenticator: Authenticator, db: dict[str, FakeCollection],
) -> None:
    issued = await authenticator.issue("dana", issued_by="admin", roles=["admin"])
    dana = await authenticator.principal(bearer(issued.token))
    assert dana.is_admin and dana.groups == {"hr_leads"} and dana.sees_every_run
    db[auth.USERS].docs["dana"]["roles"] = []  # demoted in the directory
    authenticator.forget()  # what CACHE_SECONDS later does in every process
    demoted = await authenticator.principal(bearer(issued.token))
    assert not demoted.is_admin
    with pytest.raises(HTTPException) as refused:
        await authenticator.admin(bearer(issued.token))
    assert refused.value.status_code == 403
    db[auth.USERS].docs["dana"]["roles"] = ["operator"]
    authenticator.forget()
    operator = await authenticator.operator(bearer(issued.token))
    assert operator.sees_every_run and not operator.is_admin


async def test_a_user_removed_from_the_directory_is_refused(
    authenticator: Authenticator, db: dict[str, FakeCollection],
) -> None:
    issued = await authenticator.issue("hana", issued_by="admin")
    assert (await authenticator.check(issued.token)).queues == {"hr"}
    del db[auth.USERS].docs["hana"]
    authenticator.forget()
    assert await refusal(authenticator, issued.token) == "user 'hana' is no longer in the directory"


async def test_tokens_expire_and_sessions_sooner(
    authenticator: Authenticator, db: dict[str, FakeCollection],
) -> None:
    now = datetime.now(UTC)
    api = await authenticator.issue("hana", issued_by="admin")
    session = await authenticator.issue("hana", kind="session", issued_by="hana")
    assert timedelta(days=29) < api.expires_at - now <= timedelta(days=30, seconds=5)
    assert timedelta(hours=11) < session.expires_at - now <= timedelta(hours=12, seconds=5)
    db[auth.TOKENS].docs[hash_token(api.token)]["expires_at"] = now - timedelta(seconds=1)
    authenticator.forget()
    assert "expired" in await refusal(authenticator, api.token)
    # A token stored before tokens expired lasts the lifetime of its kind from its issue.
    legacy = "bt_legacy"
    db[auth.TOKENS].docs[hash_token(legacy)] = {
        "_id": hash_token(legacy), "id": "legacy", "user_id": "hana", "roles": ["admin"],
        "created_at": now - timedelta(days=31), "revoked": False}
    assert "expired" in await refusal(authenticator, legacy)


async def test_the_api_takes_bearer_tokens_only_never_the_session_cookie(
    authenticator: Authenticator,
) -> None:
    session = await authenticator.issue("hana", kind="session", issued_by="hana")
    with pytest.raises(HTTPException) as refused:
        await authenticator.principal(request(cookie=session.token))
    assert refused.value.status_code == 401
    assert (await authenticator.session(session.token)) is not None  # the /ui pages' way


async def test_signing_out_revokes_the_session_on_the_server(authenticator: Authenticator) -> None:
    api = await authenticator.issue("hana", issued_by="admin")
    session = await authenticator.issue("hana", kind="session", issued_by="hana")
    await authenticator.end_session(session.token)
    assert await authenticator.session(session.token) is None
    assert await refusal(authenticator, session.token) == "unknown or revoked token"
    await authenticator.end_session(api.token)  # only sessions end by signing out
    assert (await authenticator.check(api.token)).user_id == "hana"


async def test_the_bootstrap_admin_token_stays_an_admin(authenticator: Authenticator) -> None:
    bootstrap = await authenticator.admin(bearer("bt_bootstrap"))
    assert bootstrap.is_admin and bootstrap.bootstrap


async def test_made_up_tokens_do_not_grow_the_cache_without_bound(
    authenticator: Authenticator, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(auth, "CACHE_ENTRIES", 50)
    for n in range(200):
        await refusal(authenticator, f"bt_made_up_{n}")
    assert len(authenticator._cache) <= 50
