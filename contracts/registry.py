"""The registry of published payload versions, and encoding / parsing at the edge."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from contracts.envelope import Envelope, Payload
from contracts.events import commands, dlq, notifications, records, runs, steps, workitems
from contracts.upcasters import UPCASTERS

MAX_MESSAGE_BYTES = 1_000_000


class ContractError(ValueError):
    """A message that does not match any published contract; the text says why."""


def _payload_models() -> list[type[Payload]]:
    models: list[type[Payload]] = []
    for module in (commands, dlq, notifications, records, runs, steps, workitems):
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Payload)
                and value.__module__ == module.__name__
                and value.TYPE
            ):
                models.append(value)
    return models


REGISTRY: dict[tuple[str, int], type[Payload]] = {
    (model.TYPE, model.VERSION): model for model in _payload_models()
}
LATEST: dict[str, int] = {}
for _type, _version in REGISTRY:
    LATEST[_type] = max(LATEST.get(_type, 0), _version)


def encode(envelope: Envelope) -> bytes:
    return envelope.model_dump_json().encode()


def headers_of(envelope: Envelope) -> dict[str, str]:
    """Type and version ride in Kafka headers too, so routers need not parse the body."""
    return {
        "type": envelope.type,
        "schema_version": str(envelope.schema_version),
        "correlation_id": envelope.correlation_id,
    }


def parse(raw: bytes) -> Envelope:
    """Parse wire bytes into an envelope with the newest typed payload, or raise ContractError."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ContractError(f"message is {len(raw)} bytes; the limit is {MAX_MESSAGE_BYTES}")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ContractError("the message is not a JSON object")
    return parse_dict(data)


def parse_dict(data: dict[str, Any]) -> Envelope:
    type_ = data.get("type")
    version = data.get("schema_version")
    if not isinstance(type_, str) or not isinstance(version, int):
        raise ContractError("missing or malformed 'type' / 'schema_version'")
    if type_ not in LATEST:
        raise ContractError(f"unknown message type {type_!r}")
    if (type_, version) not in REGISTRY:
        raise ContractError(f"unknown version {version} of {type_}; known up to {LATEST[type_]}")
    payload = data.get("payload")
    if not isinstance(payload, dict):
        raise ContractError("'payload' must be a JSON object")
    payload, version = _upcast(type_, version, payload)
    model = REGISTRY[(type_, version)]
    try:
        typed = model.model_validate(payload)
        return Envelope.model_validate({**data, "schema_version": version, "payload": typed})
    except ValidationError as exc:
        raise ContractError(f"{type_} v{version} is invalid: {_errors(exc)}") from exc


def _upcast(type_: str, version: int, payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
    while version < LATEST[type_]:
        step = UPCASTERS.get((type_, version))
        if step is None:
            raise ContractError(f"no upcaster from {type_} v{version}")
        try:
            payload = step(payload)
        except KeyError as exc:
            raise ContractError(f"{type_} v{version} lacks field {exc}") from exc
        version += 1
    return payload, version


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
        for err in exc.errors()[:10]
    )
