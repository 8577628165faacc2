"""The HTTP client: every service's error shape becomes one clear line (plus details)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from cli.client import HttpError, ServiceClient, describe_error_body, seg
from cli.errors import CliError, UsageError

Handler = Callable[[httpx.Request], httpx.Response]


def client_for(handler: Handler, token: str | None = "bt_test",
               service: str = "trigger") -> ServiceClient:
    return ServiceClient(service, "http://svc.test/", token, transport=httpx.MockTransport(handler))


def answer(status: int, body: Any = None, *, text: str | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if text is not None:
            return httpx.Response(status, text=text)
        return httpx.Response(status, json=body) if body is not None else httpx.Response(status)
    return handler


def failure(handler: Handler, **kwargs: Any) -> CliError:
    with client_for(handler, **kwargs) as client, pytest.raises(CliError) as caught:
        client.get("/anything")
    return caught.value


def test_fastapi_detail_text_is_the_message() -> None:
    error = failure(answer(404, {"detail": "no run r-1"}), service="stage-coordinator")
    assert isinstance(error, HttpError) and error.status == 404 and error.exit_code == 1
    assert error.lines == ["error: no run r-1 (stage-coordinator answered 404)"]


def test_definition_issues_are_printed_one_per_line_as_path_and_message() -> None:
    body = {"detail": {"message": "the definition is invalid", "issues": [
        {"path": "stages[0](s).steps[0](a).action", "message": "unknown action 'htp'"},
        {"path": "", "message": "line 2, column 1: YAML syntax error"}]}}
    error = failure(answer(422, body))
    assert error.lines == [
        "error: the definition is invalid (trigger answered 422)",
        "stages[0](s).steps[0](a).action: unknown action 'htp'",
        "line 2, column 1: YAML syntax error",
    ]


def test_work_guide_reason_and_field_errors() -> None:
    body = {"detail": {"reason": "the form has 2 field errors", "code": "invalid", "errors": [
        {"field": "amount", "message": "0 is less than the minimum of 1"},
        {"field": "start_date", "message": "'x' is not a 'date'"}]}}
    error = failure(answer(422, body), service="assignment")
    assert error.lines == [
        "error: the form has 2 field errors (assignment answered 422)",
        "amount: 0 is less than the minimum of 1",
        "start_date: 'x' is not a 'date'",
    ]


def test_work_guide_reason_without_field_errors() -> None:
    body = {"detail": {"reason": "cannot claim a completed work item", "code": "conflict"}}
    assert failure(answer(409, body)).lines == [
        "error: cannot claim a completed work item (trigger answered 409)"]


def test_fastapi_request_validation_lists_each_location() -> None:
    body = {"detail": [
        {"type": "missing", "loc": ["body", "orchestration"], "msg": "Field required"},
        {"type": "greater_than_equal", "loc": ["query", "limit"], "msg": "Input should be >= 1"}]}
    assert failure(answer(422, body)).lines == [
        "error: the request was not accepted (trigger answered 422)",
        "body.orchestration: Field required",
        "query.limit: Input should be >= 1",
    ]


def test_an_answer_that_is_not_json_shows_its_text() -> None:
    error = failure(answer(502, text="<html>\n Bad   gateway </html>"))
    assert error.lines == ["error: <html> Bad gateway </html> (trigger answered 502)"]


def test_an_empty_error_answer_shows_the_reason_phrase() -> None:
    assert failure(answer(503)).lines == [
        "error: Service Unavailable (trigger answered 503)"]


def test_an_unknown_json_shape_is_shown_compactly() -> None:
    error = failure(answer(500, {"detail": {"weird": [1]}}))
    assert error.lines == ['error: {"weird": [1]} (trigger answered 500)']


def test_401_without_a_token_says_how_to_configure_one() -> None:
    refused = answer(401, {"detail": "a bearer token is required"})
    assert failure(refused, token=None).lines == [
        "error: a bearer token is required (trigger answered 401)",
        "no token is configured: pass --token, set BATON_TOKEN or run `baton login TOKEN`",
    ]
    assert failure(refused, token="bt_wrong").lines == [
        "error: a bearer token is required (trigger answered 401)"]


def test_a_refused_connection_says_baton_may_not_be_running() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)
    error = failure(refuse, service="assignment")
    assert error.lines == [
        "error: cannot reach assignment at http://svc.test: is Baton running? (make run)"]
    assert error.exit_code == 1


def test_a_timeout_and_a_dropped_connection_are_reported_as_such() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    def dropped(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed", request=request)
    assert failure(slow).message == "trigger at http://svc.test did not answer within 15s"
    assert failure(dropped).message == (
        "lost the connection to trigger at http://svc.test: peer closed")


def test_a_url_without_a_scheme_is_a_usage_error() -> None:
    with ServiceClient("trigger", "localhost:8101", None) as client, \
            pytest.raises(UsageError) as caught:
        client.get("/definitions")
    assert caught.value.exit_code == 2
    assert caught.value.message.startswith("invalid URL for trigger: 'localhost:8101'")


def test_a_success_sends_the_token_and_the_given_parameters_and_decodes_json() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(200, json={"ok": True, "echo": json.loads(request.content or "null")})

    with client_for(handler, token="bt_abc") as client:
        assert client.post("/runs", {"a": 1}, params={"x": "1", "skip": None},
                           headers={"Idempotency-Key": "k"}) == {"ok": True, "echo": {"a": 1}}
        assert client.delete(f"/tokens/{seg('a/b c')}") is None
    assert seen[0].headers["authorization"] == "Bearer bt_abc"
    assert seen[0].headers["idempotency-key"] == "k"
    assert str(seen[0].url) == "http://svc.test/runs?x=1"
    assert seen[1].url.raw_path == b"/tokens/a%2Fb%20c"


def test_no_authorization_header_without_a_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[])
    with client_for(handler, token=None) as client:
        client.get("/definitions")
    assert "authorization" not in seen[0].headers


def test_a_success_that_is_not_json_is_an_error() -> None:
    error = failure(answer(200, text="<html>hello</html>"))
    assert error.message == (
        "trigger at http://svc.test answered 200 with something that is not JSON")


@pytest.mark.parametrize(("body", "message", "details"), [
    ("plain", "plain", []),
    ({"detail": "text"}, "text", []),
    ({"detail": {"message": "m", "issues": []}}, "m", []),
    ({"detail": {"errors": [{"field": "f", "message": "bad"}]}}, None, ["f: bad"]),
    (None, None, []),
    (17, None, []),
])
def test_describe_error_body_shapes(body: Any, message: str | None, details: list[str]) -> None:
    assert describe_error_body(body) == (message, details)


def test_a_plain_http_client_loads_no_ca_bundle_and_https_verifies() -> None:
    import ssl

    from cli.client import _tls_for

    plain = _tls_for("HTTP://127.0.0.1:8104")
    assert isinstance(plain, ssl.SSLContext)
    assert plain.verify_mode == ssl.CERT_REQUIRED and plain.check_hostname
    assert plain.cert_store_stats()["x509_ca"] == 0  # trusts nothing, should TLS ever happen
    assert _tls_for("https://baton.example.com") is True
