"""HTTP request action: templated url/headers/body, response mapped to outputs with CEL.

Calls go only where the outbound policy allows (services/step_runner/outbound.py: no
internal addresses unless allowlisted, checked on the address connected to); redirects
are not followed (a 3xx is the step's answer).
"""

from __future__ import annotations

import contextlib
from typing import Any

import httpx

from services.step_runner.actions import ActionContext, ActionResult, FatalError, RetryableError
from services.step_runner.outbound import OutboundPolicy, OutboundRefused, guarded_client
from shared.expressions import ExpressionError, evaluate

MAX_RESPONSE_BYTES = 1_000_000


class HttpAction:
    """inputs: url, method (POST), headers, json | body, timeout_seconds, outputs {name: CEL}.

    The CEL expressions in ``outputs`` see ``response.status``, ``response.body`` (parsed JSON
    when it is JSON) and ``response.headers``.  5xx, 429 and network errors are retryable.
    """

    def __init__(self, policy: OutboundPolicy | None = None) -> None:
        self.policy = policy or OutboundPolicy()  # public addresses only
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> HttpAction:
        return cls(OutboundPolicy.parse(settings.outbound_allow))

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = guarded_client(self.policy)
        return self._client

    async def run(self, inputs: dict[str, Any], context: ActionContext) -> ActionResult:
        url = inputs.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise FatalError(f"http needs an absolute http(s) url, got {url!r}")
        headers = {str(k): str(v) for k, v in dict(inputs.get("headers", {})).items()}
        headers.setdefault("Idempotency-Key", context.operation_key or context.idempotency_key)
        # A structured body (the usual case in definitions) is sent as JSON; text as is.
        given = inputs.get("body")
        payload = inputs.get("json", given if isinstance(given, dict | list) else None)
        content = None if payload is not None or given is None else str(given)
        try:
            response = await self.client().request(
                str(inputs.get("method", "POST")).upper(),
                url,
                headers=headers,
                json=payload,
                content=content,
                timeout=float(inputs.get("timeout_seconds", 30)),
            )
        except OutboundRefused as exc:
            raise FatalError(str(exc)) from None
        except httpx.TransportError as exc:
            raise RetryableError(f"{url}: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise RetryableError(f"{url} answered {response.status_code}")
        if response.status_code >= 400:
            raise FatalError(f"{url} answered {response.status_code}: {response.text[:500]}")
        body: Any = response.text[:MAX_RESPONSE_BYTES]
        if response.headers.get("content-type", "").startswith("application/json"):
            with contextlib.suppress(ValueError):  # labelled JSON but is not: keep the text
                body = response.json()
        scope = {"response": {"status": response.status_code, "body": body,
                              "headers": dict(response.headers)}}
        outputs: dict[str, Any] = {"status": response.status_code}
        for name, expression in dict(inputs.get("outputs", {})).items():
            try:
                outputs[name] = evaluate(str(expression), scope)
            except ExpressionError as exc:
                raise FatalError(f"output {name!r}: {exc}") from exc
        return ActionResult(outputs=outputs)
