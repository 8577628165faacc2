"""One small HTTP client for every service: JSON in, JSON out, errors as one clear line.

- 4xx/5xx answers become an :class:`HttpError` with the server's own message and, below it,
  each field or path problem on its own line (``path: message``);
- a refused or failed connection becomes "cannot reach <service> at <url>: is Baton
  running? (make run)".

Every error shape the services use is understood: RFC 9457 problem details
(``{"title", "status", "detail": "text", "errors": [{"field", "message"}]}``, what every
service answers now), and the older shapes: FastAPI's ``{"detail": "text"}``, the
definition issues ``{"detail": {"message", "issues": [{"path", "message"}]}}``, the Work
Guide's ``{"detail": {"reason", "code", "errors": [{"field", "message"}]}}`` and FastAPI's
request validation ``{"detail": [{"loc", "msg"}]}``.
"""

from __future__ import annotations

import json
import ssl
import sys
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from cli.errors import CliError, UsageError

# httpx imports its own command line (click, rich, pygments: about 0.1 s of CPU) whenever
# those happen to be installed; `baton` never uses it, and a None entry makes that import
# fail at once (httpx then keeps a stub, as when they are missing).
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx  # noqa: E402

DEFAULT_TIMEOUT = 15.0
NOT_RUNNING_HINT = "is Baton running? (make run)"
NO_TOKEN_HINT = "no token is configured: pass --token, set BATON_TOKEN or run `baton login TOKEN`"


class HttpError(CliError):
    """A service answered with an error status."""

    def __init__(self, message: str, details: list[str], status: int) -> None:
        super().__init__(message, details)
        self.status = status


def _issue_line(item: Any) -> str:
    if not isinstance(item, Mapping):
        return str(item)
    path: Any = item.get("path", item.get("field"))
    if path is None and isinstance(item.get("loc"), list | tuple):
        path = ".".join(str(part) for part in item["loc"])
    message = item.get("message", item.get("msg", ""))
    if isinstance(message, dict | list):
        message = json.dumps(message)
    return f"{path}: {message}" if path not in (None, "") else str(message)


def describe_error_body(body: Any) -> tuple[str | None, list[str]]:
    """The server's message and its detail lines, from any of the services' error shapes."""
    detail = body.get("detail", body) if isinstance(body, Mapping) else body
    if isinstance(detail, str):  # problem details: the field problems are beside it
        errors = body.get("errors") if isinstance(body, Mapping) else None
        return detail, [_issue_line(item) for item in errors or ()]
    if isinstance(detail, Mapping):
        lines = [
            _issue_line(item)
            for key in ("errors", "issues")
            if isinstance(detail.get(key), list)
            for item in detail[key]
        ]
        message = next(
            (detail[key] for key in ("reason", "message", "msg", "error")
             if isinstance(detail.get(key), str) and detail[key]),
            None,
        )
        if message is None and not lines:
            message = json.dumps(detail, default=str)
        return message, lines
    if isinstance(detail, list):
        return "the request was not accepted", [_issue_line(item) for item in detail]
    return None, []


def error_from_response(
    service: str, response: httpx.Response, *, has_token: bool = True
) -> HttpError:
    status = response.status_code
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    message, details = describe_error_body(body)
    if not message:
        text = " ".join(response.text.split())
        message = text[:300] if text else (response.reason_phrase or "no message")
    if not message:
        message = "no message"
    if status == 401 and not has_token:
        details.append(NO_TOKEN_HINT)
    return HttpError(f"{message} ({service} answered {status})", details, status)


def _tls_for(base_url: str) -> ssl.SSLContext | bool:
    """Verify https as httpx does; a plain-http service needs no CA bundle (loading one
    costs tens of milliseconds of CPU per command).  Redirects are not followed, so a
    plain-http client never makes a TLS connection; if it did, a context that trusts
    nothing would refuse it.
    """
    if base_url.lower().startswith("http://"):
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return True


class ServiceClient:
    """Talks to one service; use it as a context manager or call :meth:`close`."""

    def __init__(
        self,
        service: str,
        base_url: str,
        token: str | None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.service = service
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        headers = {"Accept": "application/json", "User-Agent": "baton-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport,
            verify=_tls_for(self.base_url),
        )

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """The decoded JSON answer (None for an empty one); raises CliError on any failure."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        where = f"{self.service} at {self.base_url}"
        try:
            response = self._http.request(
                method,
                path,
                params=query,
                json=body if content is None and body is not None else None,
                content=content,
                headers=dict(headers or {}),
            )
        except httpx.InvalidURL as exc:
            raise UsageError(f"invalid URL for {self.service}: {self.base_url!r} ({exc})") from exc
        except httpx.UnsupportedProtocol as exc:
            raise UsageError(f"invalid URL for {self.service}: {self.base_url!r} ({exc})") from exc
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise CliError(f"cannot reach {where}: {NOT_RUNNING_HINT}") from exc
        except httpx.TimeoutException as exc:
            raise CliError(f"{where} did not answer within {self.timeout:g}s") from exc
        except httpx.HTTPError as exc:
            raise CliError(f"lost the connection to {where}: {exc or type(exc).__name__}") from exc
        if response.status_code >= 400:
            raise error_from_response(self.service, response, has_token=bool(self.token))
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise CliError(
                f"{where} answered {response.status_code} with something that is not JSON"
            ) from exc

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, body=body, **kwargs)

    def put(self, path: str, body: Any = None) -> Any:
        return self.request("PUT", path, body=body)

    def patch(self, path: str, body: Any = None) -> Any:
        return self.request("PATCH", path, body=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)


def seg(value: str) -> str:
    """One path segment, escaped (ids come from users and may hold anything)."""
    return quote(str(value), safe="")
