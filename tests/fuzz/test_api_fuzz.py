"""make fuzz: Schemathesis against each service's OpenAPI document, on the running stack.

For every operation of every service, as an admin and as a person without the admin role,
Hypothesis generates requests that fit the schema and requests that do not (wrong types,
missing and extra fields, hostile strings).  No answer may be a 5xx, and each answer must
match its documented schema where one is given.  Every 5xx found has become a regression
test in the default suite (tests/e2e/test_hostile_input.py).

Settings (environment): BATON_FUZZ_EXAMPLES, examples per operation and mode (default 50).
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import yaml
from e2e.conftest import ROOT, publish_definition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from infra.stack import SERVICES

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("BATON_FUZZ_EXAMPLES", "50"))
PERSON = "hana"  # in examples/directory.yaml, without the admin role


def success_schema_conformance(ctx: Any, response: Any, case: Any) -> bool | None:
    """The documented schema of a 2xx answer.  A 4xx answer carries {"detail": text or an
    object with the issues}, not the list FastAPI documents for its own 422."""
    if 200 <= response.status_code < 300:
        return response_schema_conformance(ctx, response, case)
    return None


CHECKS = [not_a_server_error, success_schema_conformance]
# The definitions endpoints read YAML or JSON text from the raw body (not described in the
# OpenAPI document as a schema): these bodies are sent to them as well.
HOSTILE_TEXT = st.sampled_from([
    "", "{", "[" * 5000, "a: &a [1]\nb: [*a, *a]", "name: x\nname: y", "\x00", "\ud800",
    "!!python/object/apply:os.system ['true']", "name: " + "x" * 300_000, "1e400", "NaN",
    (ROOT / "examples" / "hello.yaml").read_text().replace("action: noop",
                                                            "action: noop\n        when: 1/0"),
]) | st.text(max_size=200)


@pytest.fixture(scope="module")
def tokens(stack: Any) -> dict[str, str]:
    """The admin token, and a token issued to a person without the admin role."""
    admin = {"Authorization": "Bearer bt_e2e_admin_token"}
    assignment = stack.url("assignment")
    directory = yaml.safe_load((ROOT / "examples" / "directory.yaml").read_text())
    with httpx.Client(timeout=30) as client:
        loaded = client.put(f"{assignment}/directory", json=directory, headers=admin)
        assert loaded.status_code == 200, loaded.text
        issued = client.post(f"{assignment}/tokens", json={"user_id": PERSON}, headers=admin)
        assert issued.status_code == 201, issued.text
    return {"admin": admin["Authorization"], "person": f"Bearer {issued.json()['token']}"}


@pytest.fixture(scope="module")
async def seeded(stack: Any, tokens: dict[str, str]) -> None:
    """Something to find: a published orchestration and a run."""
    headers = {"Authorization": tokens["admin"]}
    async with httpx.AsyncClient(timeout=30) as client:
        await publish_definition(client, stack.url("trigger"), ROOT / "examples" / "hello.yaml",
                                 headers)
        started = await client.post(f"{stack.url('trigger')}/runs",
                                    json={"orchestration": "hello"}, headers=headers)
        assert started.status_code == 202, started.text


def operations(url: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def fuzz_operation(operation: Any, headers: dict[str, str], mode: GenerationMode) -> None:
    strategy = operation.as_strategy(generation_mode=mode)

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(case=strategy)
    def run(case: Any) -> None:
        case.headers = {**(case.headers or {}), **headers}
        response = case.call(timeout=30)
        case.validate_response(response, checks=CHECKS)

    run()


def fuzz_raw_text(url: str, path: str, headers: dict[str, str]) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(text=HOSTILE_TEXT, fmt=st.sampled_from(["yaml", "json", "xml"]))
    def run(text: str, fmt: str) -> None:
        body = text.encode("utf-8", errors="surrogatepass")
        with httpx.Client(timeout=30) as client:
            response = client.post(f"{url}{path}", params={"format": fmt}, content=body,
                                   headers=headers)
        assert response.status_code < 500, f"{path} {fmt}: {response.status_code} {response.text}"

    run()


@pytest.mark.parametrize("principal", ["admin", "person"])
@pytest.mark.parametrize("service", list(SERVICES))
def test_no_server_errors(stack: Any, seeded: None, tokens: dict[str, str], service: str,
                          principal: str, tmp_path: Path) -> None:
    url = stack.url(service)
    headers = {"Authorization": tokens[principal]}
    failures: list[str] = []
    ops = operations(url)
    assert ops, f"{service} documents no operations"
    for operation in ops:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz_operation(operation, headers, mode)
            except Unsatisfiable:  # nothing to get wrong: no parameters, no body
                continue
            except Exception as exc:  # collect them all, then fail once with the list
                failures.append(f"{operation.label} ({mode.value}): {_summary(exc)}")
    if service == "trigger":
        for path in ("/definitions/validate", "/definitions"):
            try:
                fuzz_raw_text(url, path, headers)
            except Exception as exc:
                failures.append(f"POST {path} (raw text): {_summary(exc)}")
    assert not failures, "\n\n".join(failures)


def _summary(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc))
    return text[:3000]
