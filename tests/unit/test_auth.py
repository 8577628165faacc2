"""Token checks (shared/auth.py, shared/access.py) against the access topic, and the
assignment service's token desk that publishes on it (services/assignment/tokens.py).

The topic is a list here: what is published stays unread by a view until the view follows
it (the background read of shared/projection.py) or catches up (what a miss does).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import HTTPException, Request

from contracts import Envelope, encode, parse
from contracts.envelope import new_event
from contracts.events.access import AccessPerson, DirectoryPublished
from services.assignment.tokens import TokenDesk, token_issued
from shared import auth
from shared.access import AccessView
from shared.auth import Authenticator, hash_token

DANA = AccessPerson(id="dana", roles=("admin",), groups=("hr_leads",))
HANA = AccessPerson(id="hana", queues=("hr",))


class FakeCollection:
    """The few calls the token desk makes, on documents in a dict."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}

    @staticmethod
    def _matches(doc: dict[str, Any], query: dict[str, Any]) -> bool:
        return all(doc.get(key) == value for key, value in query.items())

    async def insert_one(self, doc: dict[str, Any]) -> None:
        self.docs[doc["_id"]] = dict(doc)

    async def update_one(self, query: dict[str, Any], update: dict[str, Any]) -> Any:
        found = [d for d in self.docs.values() if self._matches(d, query)][:1]
        for doc in found:
            doc.update(update["$set"])
        return type("Result", (), {"matched_count": len(found)})()

    async def find_one_and_update(self, query: dict[str, Any], update: dict[str, Any],
                                  **_: Any) -> dict[str, Any] | None:
        found = [d for d in self.docs.values() if self._matches(d, query)][:1]
        for doc in found:
            doc.update(update["$set"])
        return dict(found[0]) if found else None

    async def find(self, query: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        for doc in list(self.docs.values()):
            if self._matches(doc, query):
                yield dict(doc)


class Topic:
    """The access topic: an ordered log that each view reads at its own pace."""

    def __init__(self) -> None:
        self.log: list[bytes] = []

    async def publish(self, envelopes: Iterable[Envelope]) -> None:
        self.log.extend(encode(e) for e in envelopes)

    def reader(self, view: AccessView) -> Reader:
        reader = Reader(self, view)
        view.projection = reader  # type: ignore[assignment]
        return reader


class Reader:
    """One service's projection of the topic (shared/projection.py, without Kafka)."""

    def __init__(self, topic: Topic, view: AccessView) -> None:
        self.topic, self.view, self.position, self.catch_ups = topic, view, 0, 0

    def follow(self) -> None:
        for raw in self.topic.log[self.position:]:
            self.view.apply(parse(raw))
        self.position = len(self.topic.log)

    async def catch_up(self) -> None:
        self.catch_ups += 1
        self.follow()


def directory(revision: int, *people: AccessPerson) -> Envelope:
    return new_event(DirectoryPublished(revision=revision, people=people),
                     producer="assignment", key="directory")


@pytest.fixture
def topic() -> Topic:
    return Topic()


@pytest.fixture
def tokens() -> FakeCollection:
    return FakeCollection()


@pytest.fixture
async def desk(topic: Topic, tokens: FakeCollection) -> TokenDesk:
    """The assignment service's authenticator: it issues and revokes, and checks."""
    view = AccessView()
    topic.reader(view)
    await topic.publish([directory(1, DANA, HANA)])
    return TokenDesk({"tokens": tokens}, view, topic, "bt_bootstrap",  # type: ignore[arg-type]
                     token_lifetime=timedelta(days=30), session_lifetime=timedelta(hours=12))


def elsewhere(topic: Topic) -> tuple[Authenticator, Reader]:
    """Another service's authenticator and its projection of the same topic."""
    view = AccessView()
    reader = topic.reader(view)
    reader.follow()
    return Authenticator(view, "bt_bootstrap"), reader


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


async def test_roles_groups_and_queues_come_from_the_directory_on_the_topic(
    desk: TokenDesk, topic: Topic,
) -> None:
    issued = await desk.issue("dana", issued_by="admin", roles=["admin"])
    service, reader = elsewhere(topic)
    dana = await service.principal(bearer(issued.token))
    assert dana.is_admin and dana.groups == {"hr_leads"} and dana.sees_every_run
    await topic.publish([directory(2, DANA.model_copy(update={"roles": ()}), HANA)])
    reader.follow()  # the demotion reaches the other service
    assert not (await service.principal(bearer(issued.token))).is_admin
    with pytest.raises(HTTPException) as refused:
        await service.admin(bearer(issued.token))
    assert refused.value.status_code == 403
    await topic.publish([directory(3, DANA.model_copy(update={"roles": ("operator",)}))])
    reader.follow()
    operator = await service.operator(bearer(issued.token))
    assert operator.sees_every_run and not operator.is_admin


async def test_the_directory_written_last_counts_as_compaction_keeps_it(topic: Topic) -> None:
    """A directory restored with a lower revision still counts: a restarted service, which
    reads only the last message of the key, sees the same as a running one."""
    view = AccessView()
    for revision, people in ((3, (DANA,)), (2, (DANA, HANA))):
        view.apply(directory(revision, *people))
    assert view.revision == 2 and set(view.people) == {"dana", "hana"}


async def test_a_token_issued_a_moment_ago_is_found_by_one_catch_up(
    desk: TokenDesk, topic: Topic,
) -> None:
    service, reader = elsewhere(topic)
    issued = await desk.issue("hana", issued_by="admin")  # not read there yet
    assert (await service.check(issued.token)).queues == {"hr"}
    assert reader.catch_ups == 1
    await service.check(issued.token)
    assert reader.catch_ups == 1  # known now: no more catching up


async def test_a_user_removed_from_the_directory_is_refused(
    desk: TokenDesk, topic: Topic,
) -> None:
    issued = await desk.issue("hana", issued_by="admin")
    service, reader = elsewhere(topic)
    await topic.publish([directory(2, DANA)])
    reader.follow()
    assert await refusal(service, issued.token) == "user 'hana' is no longer in the directory"


async def test_tokens_expire_and_sessions_sooner(
    desk: TokenDesk, topic: Topic, tokens: FakeCollection,
) -> None:
    now = datetime.now(UTC)
    api = await desk.issue("hana", issued_by="admin")
    session = await desk.issue("hana", kind="session", issued_by="hana")
    assert timedelta(days=29) < api.expires_at - now <= timedelta(days=30, seconds=5)
    assert timedelta(hours=11) < session.expires_at - now <= timedelta(hours=12, seconds=5)
    past = token_issued(hash_token("bt_old"), "hana", "api", now - timedelta(seconds=1))
    await topic.publish([past])
    assert "expired" in await refusal(desk, "bt_old")


async def test_publishing_everything_again_repairs_a_crash_and_keeps_the_lifetimes(
    desk: TokenDesk, topic: Topic, tokens: FakeCollection,
) -> None:
    """A token stored but never published (a crash between the two) is published at the
    next start; a token stored before tokens had an expiry lasts its kind's lifetime."""
    now = datetime.now(UTC)
    for token, created in (("bt_recent", now - timedelta(days=1)),
                           ("bt_legacy", now - timedelta(days=31))):
        tokens.docs[hash_token(token)] = {"_id": hash_token(token), "id": token,
                                          "user_id": "hana", "created_at": created}
    service, reader = elsewhere(topic)
    assert await refusal(service, "bt_recent") == "unknown or revoked token"
    await desk.announce_all(_directory_of(DANA, HANA))
    reader.follow()
    assert (await service.check("bt_recent")).user_id == "hana"
    assert await refusal(service, "bt_legacy") == "unknown or revoked token"


async def test_the_api_takes_bearer_tokens_only_never_the_session_cookie(
    desk: TokenDesk,
) -> None:
    session = await desk.issue("hana", kind="session", issued_by="hana")
    with pytest.raises(HTTPException) as refused:
        await desk.principal(request(cookie=session.token))
    assert refused.value.status_code == 401
    assert (await desk.session(session.token)) is not None  # the /ui pages' way


async def test_a_revoked_token_is_refused_here_at_once_and_by_another_service(
    desk: TokenDesk, topic: Topic, tokens: FakeCollection,
) -> None:
    api = await desk.issue("hana", issued_by="admin")
    session = await desk.issue("hana", kind="session", issued_by="hana")
    service, reader = elsewhere(topic)
    assert (await service.check(api.token)).user_id == "hana"
    await desk.end_session(session.token)
    assert await desk.session(session.token) is None  # this service caught up before answering
    assert await refusal(desk, session.token) == "unknown or revoked token"
    await desk.end_session(api.token)  # only sessions end by signing out
    assert (await desk.check(api.token)).user_id == "hana"
    assert await desk.revoke(api.id) and not await desk.revoke("no-such-id")
    assert tokens.docs[hash_token(api.token)]["revoked"] is True
    reader.follow()
    assert await refusal(service, api.token) == "unknown or revoked token"
    assert topic.log and all(api.token.encode() not in raw for raw in topic.log)


async def test_the_bootstrap_admin_token_stays_an_admin(desk: TokenDesk) -> None:
    bootstrap = await desk.admin(bearer("bt_bootstrap"))
    assert bootstrap.is_admin and bootstrap.bootstrap


async def test_made_up_tokens_catch_up_once_each_and_do_not_grow_memory_without_bound(
    topic: Topic, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(auth, "MISS_ENTRIES", 50)
    service, reader = elsewhere(topic)
    for n in range(200):
        await refusal(service, f"bt_made_up_{n}")
    assert reader.catch_ups == 200 and len(service._misses) <= 50
    await refusal(service, "bt_made_up_199")
    assert reader.catch_ups == 200  # a repeat within MISS_SECONDS is refused from memory


def _directory_of(*people: AccessPerson) -> Any:
    from services.assignment.core.directory import Directory

    return Directory.from_document({"users": [
        {"id": p.id, "name": p.id, "email": f"{p.id}@example.com", "roles": list(p.roles)}
        for p in people]})
