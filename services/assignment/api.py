"""The Work Guide over HTTP: my work, one item, people's actions, tokens and the directory.

Who may do what is the pure core's decision (services/assignment/core/access.py); this
module maps its rejections to status codes: not_found 404, forbidden 403, conflict 409,
invalid 422.  Someone who may not see an item gets the same 404 as for an item that
does not exist, so ids cannot be probed.
"""

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response
from pydantic import BaseModel, Field, TypeAdapter

from contracts.events.workitems import AssigneeKind
from services.assignment.core import commands as cmd
from services.assignment.core.access import can_see
from services.assignment.core.people import DirectoryError
from services.assignment.core.rejection import Rejection
from services.assignment.core.workitem import AuditEntry, WorkItem
from services.assignment.directory_store import DirectoryConflict, DirectoryStore
from services.assignment.guide import WorkGuide
from services.assignment.lookup import callers_holders, held_by, with_status
from services.assignment.store import ACTIVE, item_of
from services.assignment.tokens import TOKENS, TokenDesk
from shared.auth import Authenticator, Principal

STATUS_CODES = {"not_found": 404, "forbidden": 403, "conflict": 409, "invalid": 422}
SUMMARY_FIELDS = ("run_id", "orchestration", "stage", "step", "title", "kind", "status",
                  "waiting_reason", "assignee_kind", "assignee", "claimed_by", "delegated_to",
                  "delegated_from", "due_at", "created_at", "updated_at")
LIST_FIELDS = ("history", "outbox", "applied", "lookup")  # what a list leaves out
# One serializer call for the whole history rather than one per entry: the same lists, a
# tenth less CPU in a completion's request path (decision 39).
HISTORY = TypeAdapter(tuple[AuditEntry, ...])
StatusFilter = Literal["active", "waiting", "open", "claimed", "completed", "canceled"]


class CompleteRequest(BaseModel):
    values: dict[str, Any] = Field(default_factory=dict)


class DecisionRequest(BaseModel):
    comment: str = Field(default="", max_length=4000)
    values: dict[str, Any] = Field(
        default_factory=dict,
        description="the approval's form; approving checks it as written, rejecting requires"
                    " only its required_on_reject fields")


class CommentRequest(BaseModel):
    text: str = Field(min_length=1, max_length=4000)


class DelegateRequest(BaseModel):
    to: str = Field(min_length=1, max_length=200)


class ReassignRequest(BaseModel):
    to_kind: AssigneeKind
    to: str = Field(min_length=1, max_length=200)
    reason: str = Field(default="", max_length=2000)


class BulkReassignRequest(ReassignRequest):
    ids: list[str] = Field(min_length=1, max_length=1000)


class TokenRequest(BaseModel):
    user_id: str = Field(min_length=1, max_length=200)
    # Roles come from the directory when the token is used; naming them here only checks
    # that the user holds them now (a token cannot grant a role).
    roles: list[Literal["admin", "operator", "designer"]] | None = None
    note: str = Field(default="", max_length=200)


class UserPatch(BaseModel):
    out_of_office: bool | None = None
    delegate: str | None = Field(default=None, max_length=200)
    channels: list[Literal["email", "chat", "kafka"]] | None = None


def refuse(rejection: Rejection) -> HTTPException:
    return HTTPException(STATUS_CODES[rejection.code], rejection.as_dict())


def summary(item: WorkItem, now: datetime) -> dict[str, Any]:
    body = {"id": item.id, **{k: getattr(item, k) for k in SUMMARY_FIELDS}}
    body["overdue"] = bool(item.due_at and item.due_at < now and not item.is_finished)
    return body


def detail(item: WorkItem, now: datetime) -> dict[str, Any]:
    body = summary(item, now)
    body.update(
        form=item.form, record=item.record, context=item.context, outputs=item.outputs,
        decision=item.decision, comment=item.comment, completed_by=item.completed_by,
        recipients=list(item.recipients), escalated=item.escalated,
        history=HISTORY.dump_python(item.history, mode="json"),
    )
    return body


async def act(guide: WorkGuide, item_id: str, who: Principal,
              command: cmd.Command) -> dict[str, Any]:
    """A person's command on one item: the item as it is now, or the rejection raised."""
    directory = await guide.directory_for(who)
    outcome = await guide.act(item_id, command, directory)
    if outcome.rejection:
        raise refuse(outcome.rejection)
    assert outcome.item is not None
    return detail(outcome.item, datetime.now(UTC))


async def complete_item(guide: WorkGuide, item_id: str, who: Principal,
                        body: CompleteRequest) -> dict[str, Any]:
    """Submit the form: the route below and the lean path (completing.py) both do this."""
    return await act(guide, item_id, who, cmd.Complete(who.user_id, body.values))


def work_router(guide: WorkGuide, auth: Authenticator) -> APIRouter:
    router = APIRouter(prefix="/work", tags=["work"])
    Person = Annotated[Principal, Depends(auth.principal)]
    Admin = Annotated[Principal, Depends(auth.admin)]

    # A request is routed by trying the routes in order: completing an item (most of the
    # traffic) first, then "my work" and one item, then the rest.  /bulk/reassign stays
    # before /{item_id}/reassign, which would take "bulk" for an item id.  The service
    # answers most completions before routing (completing.py); this route answers the rest
    # and documents them all.
    @router.post("/{item_id}/complete", summary="Submit the form (validated against its schema)")
    async def complete(item_id: str, body: CompleteRequest, who: Person) -> dict[str, Any]:
        return await complete_item(guide, item_id, who, body)

    @router.get("", summary="My work: items for me, my groups and my queues")
    async def my_work(
        who: Person,
        status: StatusFilter = "active",
        scope: Literal["mine", "all"] = "mine",
        orchestration: str | None = None,
        overdue: bool = False,
        sort: Literal["due", "created"] = "due",
        limit: int = Query(50, ge=1, le=500),
    ) -> list[dict[str, Any]]:
        directory = await guide.directory_for(who)
        now = datetime.now(UTC)
        statuses = ACTIVE if status == "active" else (status,)
        if scope == "all":
            if not directory.is_admin(who.user_id):
                raise HTTPException(403, {"reason": "scope=all needs the admin role",
                                          "code": "forbidden"})
            query = with_status(statuses)
        else:
            query = held_by(callers_holders(who.user_id, directory), statuses)
        if orchestration:
            query["orchestration"] = orchestration
        if overdue:
            query["due_at"] = {"$lt": now}
        order = [("due_at", 1), ("created_at", 1)] if sort == "due" else [("created_at", -1)]
        docs = await guide.store.find(query, LIST_FIELDS, order, limit)
        items = [i for i in map(item_of, docs) if i and can_see(i, who.user_id, directory)]
        if sort == "due":  # items with no due date last, not first
            items.sort(key=lambda i: (i.due_at is None, i.due_at or now, i.created_at))
        return [summary(i, now) for i in items]

    @router.get("/{item_id}", summary="One work item with its run's record and context")
    async def show(item_id: str, who: Person) -> dict[str, Any]:
        item = await guide.view(item_id)
        directory = await guide.directory_for(who)
        if item is None or not can_see(item, who.user_id, directory):
            raise refuse(Rejection(f"work item {item_id!r} not found", "not_found"))
        return detail(item, datetime.now(UTC))

    @router.post("/{item_id}/claim")
    async def claim(item_id: str, who: Person) -> dict[str, Any]:
        return await act(guide, item_id, who, cmd.Claim(who.user_id))

    @router.post("/{item_id}/release")
    async def release(item_id: str, who: Person) -> dict[str, Any]:
        return await act(guide, item_id, who, cmd.Release(who.user_id))

    @router.post("/{item_id}/approve")
    async def approve(item_id: str, body: DecisionRequest, who: Person) -> dict[str, Any]:
        return await act(guide, item_id, who, cmd.Approve(who.user_id, body.comment, body.values))

    @router.post("/{item_id}/reject")
    async def reject(item_id: str, body: DecisionRequest, who: Person) -> dict[str, Any]:
        return await act(guide, item_id, who, cmd.Reject(who.user_id, body.comment, body.values))

    @router.post("/{item_id}/comment")
    async def comment(item_id: str, body: CommentRequest, who: Person) -> dict[str, Any]:
        return await act(guide, item_id, who, cmd.Comment(who.user_id, body.text))

    @router.post("/{item_id}/delegate", summary="Hand it to someone; the owner keeps sight of it")
    async def delegate(item_id: str, body: DelegateRequest, who: Person) -> dict[str, Any]:
        return await act(guide, item_id, who, cmd.Delegate(who.user_id, body.to))

    @router.post("/bulk/reassign", summary="Admin: reassign many items; each succeeds or not")
    async def bulk_reassign(body: BulkReassignRequest, who: Admin) -> dict[str, Any]:
        directory = await guide.directory_for(who)
        ids = list(dict.fromkeys(body.ids))
        command = cmd.Reassign(who.user_id, body.to_kind, body.to, body.reason)
        # Together, so the spine group-commits them: one read and one write, not one each.
        outcomes = await asyncio.gather(*(guide.act(i, command, directory) for i in ids))
        results = []
        for item_id, outcome in zip(ids, outcomes, strict=True):
            error = outcome.rejection.reason if outcome.rejection else None
            results.append({"id": item_id, "ok": error is None, "error": error})
        return {"results": results}

    @router.post("/{item_id}/reassign", summary="Admin: move the item to someone else")
    async def reassign(item_id: str, body: ReassignRequest, who: Admin) -> dict[str, Any]:
        command = cmd.Reassign(who.user_id, body.to_kind, body.to, body.reason)
        return await act(guide, item_id, who, command)

    return router


def people_router(directory_store: DirectoryStore, guide: WorkGuide,
                  auth: TokenDesk) -> APIRouter:
    router = APIRouter(tags=["people"])
    Person = Annotated[Principal, Depends(auth.principal)]
    Admin = Annotated[Principal, Depends(auth.admin)]
    tokens = directory_store.db[TOKENS]

    @router.get("/me", summary="Who the token belongs to")
    async def me(who: Person) -> dict[str, Any]:
        directory = await guide.directory_for(who)
        user = directory.users.get(who.user_id)
        roles = sorted(who.roles)
        return {"user_id": who.user_id, "roles": roles, "name": user.name if user else "",
                "email": user.email if user else None,
                "groups": list(user.groups) if user else [],
                "queues": list(user.queues) if user else []}

    @router.post("/tokens", status_code=201, summary="Admin: issue a token (shown once)")
    async def issue(body: TokenRequest, who: Admin) -> dict[str, Any]:
        directory = await directory_store.current()
        user = directory.users.get(body.user_id)
        if user is None:
            raise HTTPException(404, {"reason": f"no user {body.user_id!r} in the directory",
                                      "code": "not_found"})
        missing = sorted(set(body.roles or ()) - set(user.roles))
        if missing:
            raise HTTPException(422, {"reason": f"{user.id!r} does not hold the role "
                                      f"{', '.join(missing)} in the directory (roles come "
                                      "from the directory)", "code": "invalid"})
        roles = sorted(user.roles)
        issued = await auth.issue(user.id, issued_by=who.user_id, note=body.note, roles=roles)
        return {"id": issued.id, "token": issued.token, "user_id": user.id, "roles": roles,
                "expires_at": issued.expires_at}

    @router.get("/tokens", summary="Admin: issued tokens (never the tokens themselves)")
    async def list_tokens(_: Admin, user_id: str | None = None) -> list[dict[str, Any]]:
        query = {"user_id": user_id} if user_id else {}
        docs = await tokens.find(query, {"_id": 0}).sort("created_at", -1).to_list(1000)
        return docs

    @router.delete("/tokens/{token_id}", status_code=204, summary="Admin: revoke a token")
    async def revoke(token_id: str, _: Admin) -> Response:
        if not await auth.revoke(token_id):
            raise HTTPException(404, {"reason": f"no token {token_id!r}", "code": "not_found"})
        return Response(status_code=204)

    @router.get("/directory", summary="Users, groups and queues, with the revision stored")
    async def show_directory(_: Person, response: Response) -> dict[str, Any]:
        directory = await directory_store.current(fresh=True)
        response.headers["ETag"] = f'"{directory.revision}"'
        return {**directory.to_document(), "revision": directory.revision}

    @router.put("/directory", summary="Admin: replace the directory (examples/directory.yaml)",
                description="With a `revision` (in the body, as `GET /directory` gives it, or "
                            "as If-Match) the directory is replaced only if that revision is "
                            "still the stored one; otherwise 409.")
    async def load_directory(
        document: dict[str, Any], _: Admin,
        if_match: Annotated[str | None, Header(max_length=40)] = None,
    ) -> dict[str, int]:
        revision = _revision_of(document.pop("revision", None), if_match)
        try:
            directory = await directory_store.load(document, revision=revision)
        except (DirectoryError, ValueError) as exc:
            raise HTTPException(422, {"reason": "the directory is invalid",
                                      "code": "invalid", "errors": _directory_errors(exc)}) from exc
        except DirectoryConflict as exc:
            raise HTTPException(409, {"reason": str(exc), "code": "conflict"}) from exc
        counts = {s: len(getattr(directory, s)) for s in ("users", "groups", "queues")}
        return {**counts, "revision": directory.revision}

    @router.patch("/directory/users/{user_id}",
                  summary="Out of office, delegate, channels (the user or an admin)")
    async def patch_user(user_id: str, body: UserPatch, who: Person) -> dict[str, Any]:
        directory = await guide.directory_for(who)
        if who.user_id != user_id and not directory.is_admin(who.user_id):
            raise HTTPException(403, {"reason": "only the user or an admin may change this",
                                      "code": "forbidden"})
        updated = await directory_store.change_user(user_id, body.model_dump(exclude_unset=True))
        if isinstance(updated, Rejection):
            raise refuse(updated)
        return updated.users[user_id].model_dump(mode="json")

    return router


def _revision_of(in_body: Any, if_match: str | None) -> int | None:
    """The revision a replace is conditional on: the body's, or If-Match's ("3" or 3)."""
    for given in (in_body, if_match):
        if given is None:
            continue
        text = given.strip().removeprefix("W/").strip('"') if isinstance(given, str) else given
        if isinstance(text, bool) or not (isinstance(text, int) or str(text).isdigit()):
            raise HTTPException(422, {"reason": f"revision {str(given)[:40]!r} is not a "
                                                "number", "code": "invalid"})
        return int(text)
    return None


def _directory_errors(exc: Exception) -> list[dict[str, str]]:
    lines = [line.strip(" -") for line in str(exc).splitlines() if line.strip(" -")]
    return [{"field": "", "message": line} for line in lines]
