"""The lean request path for ``POST /work/{item_id}/complete``, the Work Guide's busiest.

Routing, dependency solving and response validation were about two thirds of a
completion's CPU in process (decision 39).  This ASGI middleware sits inside the
request guard (shared/http_guard.py: the body is bounded and its JSON checked already) and
answers the well-formed completion itself: a JSON object body of content type
``application/json`` that :class:`CompleteRequest` accepts, read as FastAPI reads it
(``json.loads``, then the model).  The token is checked by the same
:meth:`Authenticator.bearer`, the same :func:`complete_item` acts, a raised
``HTTPException`` is answered by the same :func:`shared.problems.http_problem`, and the
result is rendered as FastAPI renders a ``dict[str, Any]`` answer.  Any other request, a
bad body, another content type, a header given twice, another method or path, is handed
to the application unchanged, so every error it answers stays exactly as it was; an
unexpected exception goes up to the same 500 answer.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter
from starlette.exceptions import HTTPException
from starlette.responses import Response

from services.assignment.api import CompleteRequest, complete_item
from services.assignment.guide import WorkGuide
from shared.auth import Authenticator
from shared.http_guard import App, Message, Receive, Scope, Send
from shared.problems import http_problem

PREFIX, SUFFIX = "/work/", "/complete"
ANSWER = TypeAdapter(dict[str, Any])  # the route's response model


class CompletionFastPath:
    """ASGI middleware: completes an item without routing; ``taken`` and ``handed_on``
    count the requests it answered and the completions it passed on."""

    def __init__(self, app: App, guide: WorkGuide, auth: Authenticator) -> None:
        self.app = app
        self.guide = guide
        self.auth = auth
        self.taken = 0
        self.handed_on = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        item_id = _completed_item(scope)
        if item_id is None:
            await self.app(scope, receive, send)
            return
        message = await receive()
        request = _well_formed(scope, message)
        if request is None:
            self.handed_on += 1
            await self.app(scope, _again(message, receive), send)
            return
        authorization, body = request
        self.taken += 1
        try:
            who = await self.auth.bearer(authorization)
            answer = await complete_item(self.guide, item_id, who, body)
        except HTTPException as exc:
            await http_problem(exc)(scope, receive, send)
            return
        content = ANSWER.dump_json(answer, by_alias=True)
        await Response(content, media_type="application/json")(scope, receive, send)


def _completed_item(scope: Scope) -> str | None:
    """The item id of ``POST /work/<id>/complete`` (the route's path), else None."""
    if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
        return None
    path: str = scope["path"]
    if not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
        return None
    item_id = path[len(PREFIX):-len(SUFFIX)]
    return item_id if item_id and "/" not in item_id else None


def _well_formed(scope: Scope, message: Message) -> tuple[str, CompleteRequest] | None:
    """The Authorization header and the body, when the request is the common case."""
    if message["type"] != "http.request" or message.get("more_body", False):
        return None
    content_type = authorization = None
    for name, value in scope["headers"]:
        if name == b"content-type":
            if content_type is not None:
                return None
            content_type = value
        elif name == b"authorization":
            if authorization is not None:
                return None
            authorization = value
    if content_type != b"application/json":
        return None
    try:
        data = json.loads(message.get("body", b""))  # as Starlette's Request.json()
        if not isinstance(data, dict):
            return None
        body = CompleteRequest.model_validate(data, from_attributes=True)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, pydantic's
        return None
    return (authorization or b"").decode("latin-1"), body


def _again(message: Message, receive: Receive) -> Receive:
    """A receive() that gives ``message`` once more, then whatever comes next."""
    pending = [message]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay
