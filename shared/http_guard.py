"""A guard in front of every service's HTTP API: bounded bodies, and JSON the services can keep.

A request body is read up to ``MAX_BODY_BYTES`` and refused with 413 past that, whatever
Content-Length says (or does not say).  A JSON body (``application/json`` or ``+json``) is
parsed once here the way the Kafka edge parses messages (``contracts.registry``): refused
with 422 and a problem document (shared/problems.py) when it nests more than 64 levels,
holds NaN or Infinity, integers beyond 64 bits or unpaired surrogates (``"\\ud800"``).
Bad syntax is left to the application, which says where it is.  Python's own JSON reader
accepts all of these; MongoDB, the API's JSON answers or the consumers then failed with a
500 or dropped the message.  The body is then handed to the application unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from contracts.registry import (
    MAX_DEPTH,
    MAX_MESSAGE_BYTES,
    ContractError,
    check_values,
    plainly_safe,
)
from shared.problems import MEDIA_TYPE, problem_bytes

MAX_BODY_BYTES = MAX_MESSAGE_BYTES
# What Python's JSON reader takes for a number and JSON has not (-Infinity holds Infinity).
_CONSTANTS = re.compile(rb"NaN|Infinity")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestGuard:
    """Pure ASGI middleware (it must see the body before FastAPI parses it)."""

    def __init__(self, app: App, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        declared = headers.get(b"content-length", b"").strip()
        if declared and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await _refuse(send, 413, self._too_large(declared.decode(errors="replace")))
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay(bytes(body), message, receive), send)
                return
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                await _refuse(send, 413, self._too_large(f"more than {len(body)}"))
                return
            if not message.get("more_body", False):
                break
        problem = _json_problem(headers.get(b"content-type", b""), bytes(body))
        if problem:
            await _refuse(send, 422, problem)
            return
        await self.app(scope, _replay(bytes(body), None, receive), send)

    def _too_large(self, size: str) -> str:
        return f"the request body is {size} bytes; the limit is {self.max_body_bytes}"


def _json_problem(content_type: bytes, body: bytes) -> str | None:
    media = content_type.split(b";")[0].strip().lower()
    if not body or not (media == b"application/json" or media.endswith(b"+json")):
        return None
    if b"\x00" not in body and plainly_safe(body) and not _CONSTANTS.search(body):
        # Nothing refused below can be in it (UTF-8: UTF-16 and 32 hold NUL bytes), so
        # it is not parsed here: the application parses it anyway, once, not twice.
        return None
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        return f"the JSON body nests more than {MAX_DEPTH} levels"
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # the application reports bad syntax its own way (with the line)
    except ValueError as exc:  # NaN, Infinity, an integer of over 4300 digits
        return f"the body is not valid JSON: {str(exc).split('; use sys.')[0]}"
    try:
        check_values(data)
    except ContractError as exc:
        return f"the JSON body cannot be accepted: {exc}"
    return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _replay(body: bytes, last: Message | None, receive: Receive) -> Receive:
    """A receive() that gives the body read here once, then whatever comes next."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    if last is not None:
        pending.append(last)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = problem_bytes(status, detail)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", MEDIA_TYPE.encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
