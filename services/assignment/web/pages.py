"""The Work Guide in the browser: server-rendered pages under /ui.

Every page reads and acts through what the HTTP API uses: the same authenticator (the
``baton_token`` cookie is one of the places it reads a token from), the directory as
:meth:`WorkGuide.directory_for` gives it, ``can_see``/``can_act`` from the core for what
to show, and :meth:`WorkGuide.act` for every change, which decides again and refuses
what the core refuses.  Buttons a person may not use are not shown, but hiding them is
never what protects anything.

Sign-in: a token (``baton tokens issue``) pasted into /ui/login is checked by the
authenticator, which then issues a session token of its own (shorter-lived; signing out
revokes it) kept in an HttpOnly, SameSite=Strict cookie.  The cookie counts for these
pages only: the JSON API takes bearer tokens.  Form posts are protected
twice: every form carries a token derived from the session (an HMAC of the session's
token, so replicas need no shared secret and it changes with the session), and a post
whose ``Origin`` (or ``Sec-Fetch-Site``) shows another site is refused.  Templates are
rendered with autoescaping on.

The run timeline needs the run, which the stage-coordinator owns: it is fetched from the
coordinator's HTTP API (``BATON_COORDINATOR_URL``) with the viewer's own session token,
so the coordinator's rule decides who sees it (whoever takes part in it, operators and
admins; docs/security.md).
"""

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import jinja2
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from contracts.events.workitems import AssigneeKind
from services.assignment.core import commands as cmd
from services.assignment.core.access import Verb, can_act, can_see
from services.assignment.core.directory import Directory, User
from services.assignment.core.rejection import Rejection
from services.assignment.core.workitem import WorkItem
from services.assignment.guide import WorkGuide
from services.assignment.lookup import callers_holders, held_by, with_status
from services.assignment.store import ACTIVE, item_of
from services.assignment.tokens import TokenDesk
from services.assignment.web import forms, timeline
from shared.auth import Authenticator, Principal
from shared.times import when

log = logging.getLogger("baton.assignment.ui")
HERE = Path(__file__).parent
COOKIE = "baton_token"
CSRF_FIELD = "csrf"
MAX_FORM_BYTES = 256 * 1024
LIST_LIMIT = 100
QUEUE_LIMIT = 200
DUE_SOON = timedelta(hours=24)
LIST_LEAVES_OUT = ("history", "outbox", "applied", "lookup", "record", "context", "form",
                   "timers", "outputs")
ASSIGNEE_KINDS: tuple[AssigneeKind, ...] = ("user", "group", "queue", "manager_of",
                                            "record_field")
ACTIONS = ("claim", "release", "complete", "approve", "reject", "comment")
FINISHING = frozenset({"complete", "approve", "reject"})
NOTICES = {
    "claimed": "You claimed this item: it is yours to do now.",
    "released": "You gave the item back to its pool.",
    "commented": "Your comment is in the item's history.",
    "completed": "Done: the item is completed and has left your list.",
    "approved": "Approved: the item is done and has left your list.",
    "rejected": "Rejected: the item is done and the run follows the rejection.",
    "signed-out": "You are signed out.",
}
DONE = {  # after finishing an item, on My work: which one it was
    "completed": "Done: “{title}” is completed and has left your list.",
    "approved": "Approved: “{title}” is done and has left your list.",
    "rejected": "Rejected: “{title}” is done; the run follows the rejection.",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".txt": "text/plain; charset=utf-8"}


@dataclass(frozen=True)
class Viewer:
    """The signed-in person: who they are, the directory as the core sees them, the CSRF."""

    principal: Principal
    directory: Directory
    token: str

    @property
    def user_id(self) -> str:
        return self.principal.user_id

    @property
    def user(self) -> User | None:
        return self.directory.users.get(self.user_id)

    @property
    def name(self) -> str:
        return timeline.person(self.directory, self.user_id)

    @property
    def is_admin(self) -> bool:
        return self.directory.is_admin(self.user_id)

    @property
    def csrf(self) -> str:
        return csrf_token(self.token)


def csrf_token(session_token: str) -> str:
    """The form token of a session: an HMAC keyed by the session's own (secret) token."""
    return hmac.new(session_token.encode(), b"baton-ui-csrf-v1", hashlib.sha256).hexdigest()


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["duration"] = timeline.duration_text
    env.filters["dt"] = _datetime_text
    env.filters["dt_s"] = lambda v: _datetime_text(v, seconds=True)
    env.filters["iso"] = lambda v: v.isoformat() if isinstance(v, datetime) else ""
    env.filters["raw_value"] = forms.raw_value
    env.filters["dom_id"] = lambda v: "wi-" + hashlib.sha1(str(v).encode()).hexdigest()[:12]
    env.filters["pretty_json"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False,
                                                      default=str)
    env.filters["sentence"] = lambda v: str(v)[:1].upper() + str(v)[1:]
    env.filters["shown"] = lambda v: "—" if v is None or v == "" else forms.raw_value(v)
    env.globals["humanize"] = forms.humanize
    return env


def _datetime_text(value: Any, seconds: bool = False) -> str:
    moment = when(value)
    shape = "%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC"
    return moment.astimezone(UTC).strftime(shape) if moment else "—"


class WorkGuidePages:
    def __init__(self, guide: WorkGuide, auth: Authenticator, coordinator_url: str) -> None:
        self.guide = guide
        self.auth = auth
        self.coordinator_url = coordinator_url.rstrip("/")
        self.templates = _environment()
        self.static = {p.name: p.read_bytes() for p in (HERE / "static").iterdir()
                       if p.suffix in STATIC_TYPES}

    # -- plumbing -------------------------------------------------------------------------

    def render(self, request: Request, template: str, viewer: Viewer | None,
               status_code: int = 200, **context: Any) -> HTMLResponse:
        body = self.templates.get_template(template).render(
            viewer=viewer, request_path=request.url.path, csrf_field=CSRF_FIELD, **context)
        return HTMLResponse(body, status_code=status_code, headers=SECURITY_HEADERS)

    def error(self, request: Request, viewer: Viewer | None, status: int, title: str,
              message: str) -> HTMLResponse:
        return self.render(request, "error.html", viewer, status, title=title, message=message)

    def not_found(self, request: Request, viewer: Viewer | None, what: str) -> HTMLResponse:
        return self.error(request, viewer, 404, "Not found",
                          f"There is no {what} here, or it is not yours to see.")

    async def viewer(self, request: Request) -> Viewer | None:
        """The signed-in person, or None (no session, or one ended, expired or revoked)."""
        token = request.cookies.get(COOKIE, "")
        principal = await self.auth.session(token)
        if principal is None:
            return None
        directory = await self.guide.directory_for(principal)
        return Viewer(principal, directory, token)

    def to_login(self, request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET":
            target = "/ui/work"  # a post cannot be replayed by following a link back
        if request.headers.get("hx-request"):
            return Response(status_code=204, headers={"HX-Redirect": "/ui/login"})
        return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", status_code=303)

    async def form(self, request: Request) -> dict[str, list[str]] | None:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return None
        return parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)

    def refuse_cross_site(self, request: Request) -> bool:
        """True when the post comes from another site (its Origin or Sec-Fetch-Site says so)."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return True
        origin = request.headers.get("origin")
        if origin is None:
            return False
        return origin == "null" or urlsplit(origin).netloc != request.headers.get("host", "")

    async def checked_post(
        self, request: Request
    ) -> tuple[Viewer, dict[str, list[str]]] | Response:
        """The viewer and the form of a post that passes the origin and CSRF checks."""
        viewer = await self.viewer(request)
        if viewer is None:
            return self.to_login(request)
        form = await self.form(request)
        if form is None:
            return self.error(request, viewer, 413, "Too large", "The form is too large.")
        sent = _first(form, CSRF_FIELD)
        if self.refuse_cross_site(request) or not hmac.compare_digest(sent, viewer.csrf):
            return self.error(request, viewer, 403, "Refused",
                              "This form was not sent from this page. Reload the page and "
                              "try again.")
        return viewer, form

    async def coordinator(self, viewer: Viewer, path: str,
                          params: Mapping[str, Any] | None = None) -> httpx.Response:
        """GET from the stage-coordinator's API as the viewer (their token, their rights)."""
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.get(f"{self.coordinator_url}{path}", params=params,
                                    headers={"Authorization": f"Bearer {viewer.token}"})

    # -- my work --------------------------------------------------------------------------

    async def my_work(self, viewer: Viewer, status: str, overdue: bool) -> list[WorkItem]:
        """The viewer's items (the API's own query and rules), soonest due first."""
        now = datetime.now(UTC)
        statuses = ACTIVE if status == "active" else (status,)
        query = held_by(callers_holders(viewer.user_id, viewer.directory), statuses)
        if overdue:
            query["due_at"] = {"$lt": now}
        order = ([("due_at", 1), ("created_at", 1)] if status == "active"
                 else [("updated_at", -1)])
        docs = await self.guide.store.find(query, LIST_LEAVES_OUT, order, LIST_LIMIT)
        items = [i for i in map(item_of, docs)
                 if i and can_see(i, viewer.user_id, viewer.directory)]
        if status == "active":
            items.sort(key=lambda i: (i.due_at is None, i.due_at or now, i.created_at))
        return items

    def sections(self, viewer: Viewer, items: Sequence[WorkItem]) -> list[dict[str, Any]]:
        """The list split the way people think of it: mine, my groups, my queues, delegated."""
        me = viewer.user_id
        buckets: dict[str, list[WorkItem]] = {"mine": [], "group": [], "queue": [],
                                              "delegated": []}
        for item in items:
            if me in (item.claimed_by, item.delegated_to) or (
                    item.assignee_kind == "user" and item.assignee == me):
                buckets["mine"].append(item)
            elif item.delegated_from == me:
                buckets["delegated"].append(item)
            elif item.assignee_kind in ("group", "queue"):
                buckets[item.assignee_kind].append(item)
            else:
                buckets["mine"].append(item)
        titles = {"mine": "Assigned to me", "group": "My groups", "queue": "My queues",
                  "delegated": "Delegated by me"}
        return [{"key": k, "title": titles[k], "items": v} for k, v in buckets.items()]

    def row(self, item: WorkItem, directory: Directory, now: datetime) -> dict[str, Any]:
        overdue = bool(item.due_at and item.due_at < now and not item.is_finished)
        due_soon = bool(item.due_at and not overdue and not item.is_finished
                        and item.due_at - now < DUE_SOON)
        return {"item": item, "overdue": overdue, "due_soon": due_soon,
                "holder": timeline.holder_text(item, directory),
                "age": (now - item.created_at).total_seconds(),
                "finished": finished_text(item, directory)}

    def list_context(self, viewer: Viewer, items: Sequence[WorkItem], status: str,
                     overdue: bool) -> dict[str, Any]:
        now = datetime.now(UTC)
        sections = [{**s, "rows": [self.row(i, viewer.directory, now) for i in s["items"]]}
                    for s in self.sections(viewer, items)]
        version = hashlib.sha256(json.dumps(
            [(i.id, i.status, i.updated_at.isoformat()) for i in items]).encode()).hexdigest()[:16]
        query = f"status={quote(status)}" + ("&overdue=1" if overdue else "")
        return {"sections": sections, "count": len(items), "version": version,
                "list_query": query, "status": status, "overdue": overdue,
                "checked_at": now, "overdue_count": sum(
                    1 for s in sections for r in s["rows"] if r["overdue"])}

    # -- one item -------------------------------------------------------------------------

    def item_context(self, viewer: Viewer, item: WorkItem, **extra: Any) -> dict[str, Any]:
        now = datetime.now(UTC)
        verbs: tuple[Verb, ...] = ("claim", "release", "complete", "approve", "reject",
                                   "comment")
        allowed = {v: can_act(item, viewer.user_id, v, viewer.directory) is None
                   for v in verbs}
        if item.is_finished:
            allowed = {v: False for v in verbs}
        allowed["claim"] = allowed["claim"] and item.claimed_by is None
        allowed["release"] = allowed["release"] and item.claimed_by is not None
        if item.kind == "approval":
            allowed["complete"] = False
        else:
            allowed["approve"] = allowed["reject"] = False
        rendered = extra.pop("rendered", None) or forms.render_form(
            item.form, approval=item.kind == "approval")
        return {"item": item, "allowed": allowed, "form": rendered,
                "row": self.row(item, viewer.directory, now),
                "notice": NOTICES.get(str(extra.pop("notice", "") or "")),
                "problem": extra.pop("problem", None),
                "comment_error": extra.pop("comment_error", None),
                "decision_comment": extra.pop("decision_comment", ""), **extra}

    async def act(self, request: Request, item_id: str, action: str) -> Response:
        checked = await self.checked_post(request)
        if isinstance(checked, Response):
            return checked
        viewer, form = checked
        item = await self.guide.view(item_id)
        if item is None or not can_see(item, viewer.user_id, viewer.directory):
            return self.not_found(request, viewer, "work item")
        me = viewer.user_id
        comment = _first(form, "comment").strip()
        raw = {k: v[0] for k, v in form.items() if k.startswith(forms.PREFIX) and v}
        command: cmd.Command
        if action == "claim":
            command = cmd.Claim(me)
        elif action == "release":
            command = cmd.Release(me)
        elif action == "complete":
            command = cmd.Complete(me, forms.values_from(item.form, raw))
        elif action == "approve":
            command = cmd.Approve(me, comment[:4000], forms.values_from(item.form, raw))
        elif action == "reject":
            command = cmd.Reject(me, comment[:4000], forms.values_from(item.form, raw))
        else:
            if not comment:
                return self.render(request, "item.html", viewer, 422, **self.item_context(
                    viewer, item, comment_error="Write a comment first."))
            command = cmd.Comment(me, comment[:4000])
        outcome = await self.guide.act(item_id, command, viewer.directory)
        if outcome.rejection is not None:
            return await self.refused(request, viewer, item_id, outcome.rejection, raw, comment)
        done = {"claim": "claimed", "release": "released", "complete": "completed",
                "approve": "approved", "reject": "rejected", "comment": "commented"}[action]
        if action in FINISHING:
            return RedirectResponse(f"/ui/work?notice={done}&item={quote(item_id, safe='')}",
                                    status_code=303)
        return RedirectResponse(f"/ui/work/{quote(item_id, safe='')}?notice={done}",
                                status_code=303)

    async def refused(self, request: Request, viewer: Viewer, item_id: str,
                      rejection: Rejection, raw: Mapping[str, str],
                      comment: str = "") -> Response:
        item = await self.guide.view(item_id)
        if rejection.code == "not_found" or item is None:
            return self.not_found(request, viewer, "work item")
        status = {"forbidden": 403, "conflict": 409, "invalid": 422}[rejection.code]
        rendered = forms.render_form(item.form, raw, rejection.errors,
                                     approval=item.kind == "approval")
        if rejection.code == "invalid" and not rejection.errors:
            rendered.errors.append(rejection.reason)
        return self.render(request, "item.html", viewer, status, **self.item_context(
            viewer, item, rendered=rendered, problem=rejection.reason, decision_comment=comment))

    # -- runs -----------------------------------------------------------------------------

    async def run_page(self, request: Request, viewer: Viewer, run_id: str) -> Response:
        # Whether the viewer may see the run is the stage-coordinator's answer (it knows
        # who takes part); asked with the viewer's own session, it says 404 otherwise.
        try:
            answer = await self.coordinator(viewer, f"/runs/{quote(run_id, safe='')}")
        except httpx.HTTPError as exc:
            log.warning("cannot reach the stage-coordinator for run %s: %r", run_id, exc)
            return self.error(request, viewer, 502, "Cannot show the run",
                              "The stage-coordinator cannot be reached right now. "
                              "Try again in a moment.")
        if answer.status_code == 404:
            return self.not_found(request, viewer, "run")
        if answer.status_code != 200:
            return self.error(request, viewer, 502, "Cannot show the run",
                              f"The stage-coordinator answered {answer.status_code}.")
        items = [i for i in map(item_of, await self.guide.store.of_runs([run_id])) if i]
        visible = [i for i in items if can_see(i, viewer.user_id, viewer.directory)]
        now = datetime.now(UTC)
        line = timeline.build(answer.json(), items, viewer.directory, now=now,
                              visible=[i.id for i in visible])
        mine = sorted(visible, key=lambda i: i.created_at)
        return self.render(request, "run.html", viewer, run=line, items=mine, now=now)

    # -- admin ----------------------------------------------------------------------------

    async def queue_items(self, pool: str, overdue: bool) -> list[WorkItem]:
        query = with_status(ACTIVE)
        kind, _, pool_id = pool.partition(":")
        if kind in ("group", "queue", "user") and pool_id:
            # The pool's key finds its items (a user's also those they claimed or were
            # delegated); the assignee clauses keep the ones assigned to it.
            query = held_by([pool], ACTIVE)
            query["assignee_kind"], query["assignee"] = kind, pool_id
        if overdue:
            query["due_at"] = {"$lt": datetime.now(UTC)}
        docs = await self.guide.store.find(query, LIST_LEAVES_OUT,
                                           [("due_at", 1), ("created_at", 1)], QUEUE_LIMIT)
        return [i for i in map(item_of, docs) if i]

    def pools(self, directory: Directory) -> list[tuple[str, str]]:
        found = [(f"queue:{q.id}", f"Queue: {q.name}") for q in directory.queues.values()]
        found += [(f"group:{g.id}", f"Group: {g.name}") for g in directory.groups.values()]
        return found

    async def stuck(self, viewer: Viewer, orchestration: str) -> tuple[
            list[dict[str, Any]], list[dict[str, Any]]]:
        params: dict[str, Any] = {"since": "1h", "top": 100}
        errors: dict[str, Any] = {"status": "error", "limit": 100}
        if orchestration:
            params["orchestration"] = errors["orchestration"] = orchestration
        stats = await self.coordinator(viewer, "/stats", params)
        failed = await self.coordinator(viewer, "/runs", errors)
        for answer in (stats, failed):
            if answer.status_code != 200:
                raise httpx.HTTPStatusError(f"the stage-coordinator answered "
                                            f"{answer.status_code}", request=answer.request,
                                            response=answer)
        return list(stats.json().get("longest_waiting") or []), list(failed.json())


def finished_text(item: WorkItem, directory: Directory) -> str:
    """How a finished item ended and by whom ("" while it is open); its time is updated_at."""
    if item.status == "canceled":
        return "Canceled" + (f": {item.cancel_reason}" if item.cancel_reason else "")
    if not item.is_finished:
        return ""
    verb = {"approved": "Approved", "rejected": "Rejected"}.get(item.decision or "", "Completed")
    who = timeline.person(directory, item.completed_by)
    return f"{verb} by {who}" if who else verb


def _first(form: Mapping[str, list[str]], key: str) -> str:
    values = form.get(key) or [""]
    return values[0]


def _safe_next(target: str) -> str:
    """Only our own pages: /ui/... and nothing that could leave the site."""
    if target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/work"


def ui_router(guide: WorkGuide, auth: TokenDesk, coordinator_url: str) -> APIRouter:
    """The /ui pages; include it in the assignment service's app."""
    pages = WorkGuidePages(guide, auth, coordinator_url)
    router = APIRouter(prefix="/ui", include_in_schema=False)

    @router.get("")
    @router.get("/")
    async def home() -> Response:
        return RedirectResponse("/ui/work", status_code=303)

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        content = pages.static.get(name)
        if content is None:
            raise HTTPException(404, "not found")
        return Response(content, media_type=STATIC_TYPES[Path(name).suffix],
                        headers={"Cache-Control": "public, max-age=3600",
                                 "X-Content-Type-Options": "nosniff"})

    @router.get("/login")
    async def login_page(request: Request, next: str = "/ui/work",
                         notice: str = "") -> Response:
        viewer = await pages.viewer(request)
        return pages.render(request, "login.html", viewer, next=_safe_next(next),
                            notice=NOTICES.get(notice), problem=None)

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await pages.form(request) or {}
        target = _safe_next(_first(form, "next"))
        if pages.refuse_cross_site(request):
            return pages.error(request, None, 403, "Refused",
                               "Sign in from this site's own sign-in page.")
        token = _first(form, "token").strip()
        principal = await auth.session(token)
        if principal is None:
            problem = ("Paste your token." if not token else
                       "That token is unknown or revoked. Ask an admin for a new one "
                       "(baton tokens issue YOUR-ID).")
            return pages.render(request, "login.html", None, 401, next=target, notice=None,
                                problem=problem)
        # The pasted token stays with its owner: the cookie holds a session of its own,
        # which expires sooner and which signing out revokes.
        # (The bootstrap admin token is no person: it is kept as it is.)
        lifetime = auth.lifetimes["session"]
        if not principal.bootstrap:
            session = await auth.issue(principal.user_id, kind="session",
                                       issued_by=principal.user_id, note="Work Guide sign-in")
            token = session.token
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https",
                            max_age=int(lifetime.total_seconds()))
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        checked = await pages.checked_post(request)
        if isinstance(checked, Response) and checked.status_code != 303:
            return checked
        if not isinstance(checked, Response):
            await auth.end_session(checked[0].token)
        response = RedirectResponse("/ui/login?notice=signed-out", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @router.get("/work")
    async def work(request: Request, status: str = "active", overdue: bool = False,
                   notice: str = "", item: str = "") -> Response:
        viewer = await pages.viewer(request)
        if viewer is None:
            return pages.to_login(request)
        status = status if status in ("active", "completed", "canceled") else "active"
        items = await pages.my_work(viewer, status, overdue)
        message = NOTICES.get(notice)
        if notice in DONE and item:
            done = await guide.view(item)
            if done and can_see(done, viewer.user_id, viewer.directory):
                message = DONE[notice].format(title=done.title)
        return pages.render(request, "work.html", viewer, notice=message,
                            **pages.list_context(viewer, items, status, overdue))

    @router.get("/work/list")
    async def work_list(request: Request, status: str = "active", overdue: bool = False,
                        since: str = "") -> Response:
        """The list alone, polled by the page; 204 (nothing to swap) when it has not changed."""
        viewer = await pages.viewer(request)
        if viewer is None:
            return pages.to_login(request)
        status = status if status in ("active", "completed", "canceled") else "active"
        items = await pages.my_work(viewer, status, overdue)
        context = pages.list_context(viewer, items, status, overdue)
        if since and since == context["version"]:
            return Response(status_code=204, headers={"Cache-Control": "no-store"})
        return pages.render(request, "_work_list.html", viewer, **context)

    @router.get("/work/{item_id}")
    async def item_page(request: Request, item_id: str, notice: str = "") -> Response:
        viewer = await pages.viewer(request)
        if viewer is None:
            return pages.to_login(request)
        item = await guide.view(item_id)
        if item is None or not can_see(item, viewer.user_id, viewer.directory):
            return pages.not_found(request, viewer, "work item")
        return pages.render(request, "item.html", viewer,
                            **pages.item_context(viewer, item, notice=notice))

    @router.post("/work/{item_id}/{action}")
    async def item_action(request: Request, item_id: str, action: str) -> Response:
        if action not in ACTIONS:
            viewer = await pages.viewer(request)
            return pages.not_found(request, viewer, "action")
        return await pages.act(request, item_id, action)

    @router.get("/runs/{run_id}")
    async def run_page(request: Request, run_id: str) -> Response:
        viewer = await pages.viewer(request)
        if viewer is None:
            return pages.to_login(request)
        return await pages.run_page(request, viewer, run_id)

    @router.get("/admin/queue")
    async def queue(request: Request, pool: str = "", overdue: bool = False) -> Response:
        viewer = await pages.viewer(request)
        if viewer is None:
            return pages.to_login(request)
        if not viewer.is_admin:
            return pages.error(request, viewer, 403, "Admins only",
                               "The queue view is for admins.")
        items = await pages.queue_items(pool, overdue)
        now = datetime.now(UTC)
        return pages.render(request, "admin_queue.html", viewer, pool=pool, overdue=overdue,
                            pools=pages.pools(viewer.directory), kinds=ASSIGNEE_KINDS,
                            rows=[pages.row(i, viewer.directory, now) for i in items],
                            results=None, problem=None, picked=set())

    @router.post("/admin/queue/reassign")
    async def bulk_reassign(request: Request) -> Response:
        checked = await pages.checked_post(request)
        if isinstance(checked, Response):
            return checked
        viewer, form = checked
        if not viewer.is_admin:
            return pages.error(request, viewer, 403, "Admins only",
                               "Only admins may reassign work.")
        ids = list(dict.fromkeys(form.get("ids") or []))[:1000]
        kind, target = _first(form, "to_kind"), _first(form, "to").strip()
        reason = _first(form, "reason").strip()[:2000]
        pool, overdue = _first(form, "pool"), _first(form, "overdue") == "1"
        problem = None
        if not ids:
            problem = "Choose at least one item."
        elif kind not in ASSIGNEE_KINDS:
            problem = "Choose whom to reassign to."
        elif not target:
            problem = "Say whom to reassign to."
        results: list[dict[str, Any]] = []
        if problem is None:
            to_kind = cast(AssigneeKind, kind)
            for item_id in ids:
                outcome = await guide.act(item_id, cmd.Reassign(
                    viewer.user_id, to_kind, target[:200], reason), viewer.directory)
                found = outcome.item or await guide.view(item_id)
                results.append({"id": item_id, "title": found.title if found else item_id,
                                "ok": outcome.rejection is None,
                                "error": outcome.rejection.reason if outcome.rejection
                                else None})
        items = await pages.queue_items(pool, overdue)
        now = datetime.now(UTC)
        failed = any(not r["ok"] for r in results)
        return pages.render(request, "admin_queue.html", viewer,
                            422 if problem or failed else 200, pool=pool, overdue=overdue,
                            pools=pages.pools(viewer.directory), kinds=ASSIGNEE_KINDS,
                            rows=[pages.row(i, viewer.directory, now) for i in items],
                            results=results or None, problem=problem,
                            picked=set(ids) if problem else set())

    @router.get("/admin/stuck")
    async def stuck(request: Request, orchestration: str = "", stage: str = "",
                    step: str = "", older_than: str = "") -> Response:
        viewer = await pages.viewer(request)
        if viewer is None:
            return pages.to_login(request)
        if not viewer.is_admin:
            return pages.error(request, viewer, 403, "Admins only",
                               "The stuck runs are for admins.")
        minimum = _seconds(older_than)
        try:
            waiting, failed = await pages.stuck(viewer, orchestration)
        except httpx.HTTPError as exc:
            log.warning("cannot read stuck runs from the stage-coordinator: %r", exc)
            return pages.error(request, viewer, 502, "Cannot list stuck runs",
                               "The stage-coordinator cannot be reached right now.")
        waiting = [w for w in waiting
                   if (not stage or w.get("stage") == stage)
                   and (not step or w.get("step") == step)
                   and float(w.get("age_seconds") or 0) >= (minimum or 0)]
        failed = [r for r in failed if not stage or r.get("stage") == stage]
        run_ids = {str(w["run_id"]) for w in waiting}
        items = [i for i in map(item_of, await guide.store.of_runs(run_ids)) if i]
        holders = {(i.run_id, i.step): timeline.holder_text(i, viewer.directory)
                   for i in sorted(items, key=lambda i: i.attempt)
                   if i.status in ("open", "claimed")}
        for entry in waiting:
            entry["holder"] = holders.get((str(entry["run_id"]), str(entry["step"])))
        return pages.render(request, "admin_stuck.html", viewer, waiting=waiting,
                            failed=failed, orchestration=orchestration, stage=stage,
                            step=step, older_than=older_than,
                            older_than_invalid=bool(older_than) and minimum is None)

    return router


def _seconds(text: str) -> float | None:
    """``90s``, ``30m``, ``4h``, ``2d`` (or plain seconds) as seconds; None when unreadable."""
    text = text.strip().lower()
    if not text:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
    number, unit = (text[:-1], text[-1]) if text[-1] in units else (text, "s")
    try:
        value = float(number) * units[unit]
    except ValueError:
        return None
    return value if value >= 0 else None
