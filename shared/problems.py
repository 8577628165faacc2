"""Every service's error answers as RFC 9457 problem details (``application/problem+json``).

One shape whatever went wrong::

    {"type": "about:blank", "title": "Unprocessable Entity", "status": 422,
     "detail": "the form is invalid", "code": "invalid",
     "errors": [{"field": "amount", "message": "..."}]}

``type`` is ``about:blank``: the status says what kind of problem it is (RFC 9457, 4.2.1),
and ``code``, an extension member, keeps the Work Guide's rejection codes (not_found,
forbidden, conflict, invalid).  ``errors`` lists the field problems of a validation
failure (a form, a definition, a request body).  Handlers raise
``HTTPException`` as before, with a text detail or a dict holding ``reason``/``message``,
``code`` and ``errors``/``issues``: :func:`install` turns each into this shape, as it
does FastAPI's request-validation 422s and any unexpected exception (a 500 that says
nothing about the internals).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("baton.problems")
MEDIA_TYPE = "application/problem+json"


def problem(status: int, detail: str, *, errors: Sequence[Mapping[str, Any]] = (),
            code: str | None = None) -> dict[str, Any]:
    """The problem document for ``status`` (its title from HTTP) and a message."""
    title = _title(status)
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status,
                            "detail": detail or title}
    if code:
        body["code"] = code
    if errors:
        body["errors"] = [dict(e) for e in errors]
    return body


def problem_bytes(status: int, detail: str) -> bytes:
    return json.dumps(problem(status, detail)).encode()


def response(status: int, detail: str, *, errors: Sequence[Mapping[str, Any]] = (),
             code: str | None = None, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(problem(status, detail, errors=errors, code=code), status_code=status,
                        media_type=MEDIA_TYPE, headers=dict(headers or {}))


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` as problem details."""
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    return http_problem(exc)


def http_problem(exc: StarletteHTTPException) -> JSONResponse:
    """The answer to a raised ``HTTPException``, wherever it was caught."""
    detail, errors, code = _parts(exc.detail)
    return response(exc.status_code, detail, errors=errors, code=code,
                    headers=getattr(exc, "headers", None))


async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"),
               "message": str(e.get("msg", ""))} for e in exc.errors()]
    return response(422, "the request is invalid", errors=errors, code="invalid")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return response(500, "an unexpected error; it is logged")


def _parts(detail: Any) -> tuple[str, list[dict[str, Any]], str | None]:
    if isinstance(detail, str):
        return detail, [], None
    if isinstance(detail, Mapping):
        text = next((str(detail[k]) for k in ("reason", "message", "detail")
                     if detail.get(k)), "")
        raw = detail.get("errors") or detail.get("issues") or []
        errors = [dict(e) if isinstance(e, Mapping) else {"field": "", "message": str(e)}
                  for e in raw]
        code = detail.get("code")
        return text, errors, str(code) if code else None
    return str(detail or ""), [], None


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
