"""The registry of published payload versions, and encoding / parsing at the edge."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, StrictInt, ValidationError, create_model

from contracts.envelope import Envelope, Payload
from contracts.events import (
    access,
    commands,
    definitions,
    dlq,
    notifications,
    records,
    runs,
    steps,
    workitems,
)
from contracts.topics import (
    COMMANDS,
    RUNS_EVENTS,
    STEPS_DISPATCH,
    STEPS_OUTCOMES,
    WORKITEMS_DISPATCH,
    WORKITEMS_EVENTS,
)
from contracts.upcasters import UPCASTERS

MAX_MESSAGE_BYTES = 1_000_000
HOLDERS = "holders"  # the header of a holder event: whom it gives the work item to
_HOLDER_TYPES = frozenset(event.TYPE for event in workitems.HOLDER_EVENTS)
MAX_DEPTH = 64  # objects and arrays inside each other; MongoDB and the handlers recurse
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # what MongoDB stores
# Everything on these topics is about one run: keyed and ordered by its run_id, and
# handled as part of that run.  Without one a message would open an orphan (a work item
# of no run, a step nobody waits for), so it is refused at the edge and dead-lettered.
RUN_TOPICS = frozenset({COMMANDS, STEPS_DISPATCH, WORKITEMS_DISPATCH, STEPS_OUTCOMES,
                        WORKITEMS_EVENTS, RUNS_EVENTS})


class ContractError(ValueError):
    """A message that does not match any published contract; the text says why."""


def _payload_models() -> list[type[Payload]]:
    models: list[type[Payload]] = []
    for module in (access, commands, definitions, dlq, notifications, records, runs, steps,
                   workitems):
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
    """The envelope as JSON bytes: what ``model_dump_json().encode()`` gives, from the
    model's serializer directly (a quarter less: no text made and encoded again), since
    every message a service sends is encoded once."""
    return envelope.__pydantic_serializer__.to_json(envelope)


def header_pairs(envelope: Envelope) -> tuple[tuple[str, bytes], ...]:
    """Type and version ride in Kafka headers too, so routers need not parse the body:
    as the producer takes them, encoded.  A holder event also says whom it gives the item
    to (``holders``, :func:`holders_value`)."""
    pairs = (("type", envelope.type.encode()),
             ("schema_version", str(envelope.schema_version).encode()),
             ("correlation_id", envelope.correlation_id.encode()))
    # By name first: an isinstance() of a pydantic model is an ABC check, and every
    # message a service sends asks.
    if envelope.type not in _HOLDER_TYPES or not isinstance(envelope.payload,
                                                              workitems.HOLDER_EVENTS):
        return pairs
    holders = holders_value(envelope.payload)
    return pairs if holders is None else (*pairs, (HOLDERS, holders))


def holders_value(event: workitems.WorkItemEvent) -> bytes | None:
    """The ``holders`` header of a holder event: its :func:`~contracts.events.workitems.
    holder_keys`, comma-separated (``user:alice,group:legal``; empty for none), so that the
    coordinator can pass over one that names no one new without parsing it (decision 40).

    None (no header: the consumer parses the message) when a key holds a comma, which
    would read as two keys, or cannot be written as UTF-8.
    """
    keys = workitems.holder_keys(event)
    if any("," in key for key in keys):
        return None
    try:
        return ",".join(keys).encode()
    except UnicodeEncodeError:
        return None


def holders_in(value: bytes | None) -> list[str] | None:
    """The holder keys a ``holders`` header names, or None when it cannot be read."""
    if value is None:
        return None
    try:
        text = value.decode()
    except UnicodeDecodeError:
        return None
    return text.split(",") if text else []


def headers_of(envelope: Envelope) -> dict[str, str]:
    """The headers as text (a dead letter keeps them so)."""
    return {name: value.decode() for name, value in header_pairs(envelope)}


def parse(raw: bytes) -> Envelope:
    """Parse wire bytes into an envelope with the newest typed payload, or raise ContractError.

    Most messages (plainly safe, of a type's newest version, as ``encode`` writes them) are
    read in one pass (:func:`_parsed_in_one_pass`); the rest, and whatever that pass
    refuses, the long way, which says why a message is refused.
    """
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ContractError(f"message is {len(raw)} bytes; the limit is {MAX_MESSAGE_BYTES}")
    plain = plainly_safe(raw)
    if plain and (envelope := _parsed_in_one_pass(raw)) is not None:
        return envelope
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise ContractError(f"not JSON we accept: nested more than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # bad UTF-8, bad syntax, NaN, an integer of over 4300 digits
        raise ContractError(f"not JSON: {str(exc).split('; use sys.')[0]}") from exc
    if not isinstance(data, dict):
        raise ContractError("the message is not a JSON object")
    if not plain:
        check_values(data)
    envelope = parse_dict(data)
    if not plain:
        _check_moments(envelope)
    return envelope


# What the value checks look for, and what its raw JSON must contain for one to be there:
# a string with an escape (a surrogate, a NUL, an escaped digit of a date), a long run of
# digits (beyond 64 bits), a number with a big exponent (beyond a float: a JSON number
# follows a colon, a comma or a bracket; an "e123" inside an id's hex digits is no number),
# a date in year 1 or 9999 (the only ones without a UTC equivalent), or enough brackets to
# nest too deep, or the raw bytes of a lone surrogate.
_SUSPECT = re.compile(
    rb"\\u|\d{19}|[:,\[]\s*-?\d+(?:\.\d+)?[eE][+-]?\d{3}|9999-|0001-|\xed[\xa0-\xbf]")
# The same, in steps that are each a fast search for a literal: the bytes with every digit
# made a 0 hold nineteen 0s for a run of nineteen digits, and "e000" (or its variants) for
# an exponent of three digits, which the exact pattern then confirms (a hex id's "e123"
# is no number).  About a third of the regular expression's time (28 us for a 900-byte
# message: each service parses every message it consumes).
# The same table makes an "E" an "e" and a "+" a "-": two searches find the six ways to
# write an exponent ("e000", "E+000"...).
_ZEROED = bytes.maketrans(b"123456789E+", b"000000000e-")
_RUN_OF_19 = b"0" * 19
# The three bytes a lenient writer gives a surrogate (U+D800-U+DFFF), which UTF-8 has no
# code for: the JSON reader takes them as the lone surrogate, which the walk refuses.
_ENCODED_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")
_EXPONENT = re.compile(rb"[:,\[]\s*-?\d+(?:\.\d+)?[eE][+-]?\d{3}")


def plainly_safe(raw: bytes) -> bool:
    """Whether the raw JSON cannot hold what :func:`check_values` and
    :func:`_check_moments` refuse, so both can be skipped (most messages: the walk over
    every value cost a tenth of a service's CPU).  Conservative: any doubt walks.  The
    same answer as ``_SUSPECT.search(raw) is None``, sooner."""
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH:
        return False
    if b"\\u" in raw or b"9999-" in raw or b"0001-" in raw:
        return False
    if b"\xed" in raw and _ENCODED_SURROGATE.search(raw):  # a lone surrogate, unescaped
        return False
    zeroed = raw.translate(_ZEROED)
    if _RUN_OF_19 in zeroed:
        return False
    if b"e000" in zeroed or b"e-000" in zeroed:
        return _EXPONENT.search(raw) is None
    return True


def refusal(envelope: Envelope) -> str | None:
    """Why a consumer would refuse ``envelope`` (its parse of the encoded bytes), or None.

    A producer asks before it stores a change whose message must reach its consumer:
    a person is told their answer cannot be sent, rather than "done" for an answer
    the run then dead-letters.
    """
    try:
        parse(encode(envelope))
    except ContractError as exc:
        return str(exc)
    return None


def refusal_of_dumped(data: dict[str, Any]) -> str | None:
    """:func:`refusal` for a message its producer built from models and dumped
    (``model_dump(mode="json")``): only what its JSON can break is checked (nesting,
    64-bit integers, finite numbers, valid text, the size), without validating again what
    the models validated when it was built.

    The JSON is written first (its size is needed anyway): when it is plainly safe (as
    :func:`parse` judges received bytes) the walk over every value is skipped.  Anything
    JSON cannot write (a lone surrogate, a number that is not finite, nesting too deep
    for the encoder) leaves no bytes to judge, and the walk says why.
    """
    try:
        raw: bytes | None = json.dumps(data, ensure_ascii=False, allow_nan=False,
                                       separators=(",", ":")).encode()
    except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        raw = None
    try:
        if raw is None or not plainly_safe(raw):
            check_values(data)
    except ContractError as exc:
        return str(exc)
    if raw is None:
        return "the message cannot be written as JSON"
    size = len(raw)
    if size > MAX_MESSAGE_BYTES:
        return f"message is {size} bytes; the limit is {MAX_MESSAGE_BYTES}"
    return None


def _check_moments(value: Any) -> None:
    """Every date-time must have a UTC equivalent (9999-12-31T23:59:59-23:59 has none): the
    services compare and store them in UTC."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            try:
                value.astimezone(UTC)
            except OverflowError:
                raise ContractError(f"{value.isoformat()} is out of range in UTC") from None
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _check_moments(getattr(value, name))
    elif isinstance(value, list | tuple):
        for item in value:
            _check_moments(item)
    elif isinstance(value, dict):
        for item in value.values():
            _check_moments(item)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def check_values(data: Any) -> None:
    """Raise ContractError for what JSON allows but the services cannot store or re-encode.

    Deep nesting, integers beyond 64 bits, numbers too big for a float (1e400 reads as
    infinity, which JSON cannot write back), strings with unpaired surrogates ("\\ud800") and
    keys with NUL characters (MongoDB cannot store them).
    """
    pending: list[tuple[Any, int]] = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict):
            if depth > MAX_DEPTH:
                raise ContractError(f"nested more than {MAX_DEPTH} levels")
            for key, item in value.items():
                _check_text(key)
                if "\x00" in key:
                    raise ContractError(f"a key contains a NUL character: {key[:50]!r}")
                pending.append((item, depth + 1))
        elif isinstance(value, list):
            if depth > MAX_DEPTH:
                raise ContractError(f"nested more than {MAX_DEPTH} levels")
            pending.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            _check_text(value)
        elif isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            raise ContractError(f"integer {str(value)[:30]}... does not fit in 64 bits")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ContractError(f"number {value} is out of range")


def _check_text(text: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ContractError(f"a string is not valid Unicode: {exc.reason}") from None


# How Envelope's JSON starts (as ``encode`` writes it): its type and version, read before
# the parse to choose the model that validates the whole message at once.
_HEAD = re.compile(rb'\{"event_id":"[^"\\]*","type":"([A-Za-z0-9_.-]{1,100})",'
                   rb'"schema_version":([1-9][0-9]{0,8}),')
_ONE_PASS: dict[tuple[str, int], type[Envelope]] = {}


def _parsed_in_one_pass(raw: bytes) -> Envelope | None:
    """The envelope of a plainly safe message (:func:`plainly_safe`) of a type's newest
    version, decoded and validated by pydantic in one pass from the JSON; None when it
    cannot say (any other message, or one it refuses): :func:`parse` then reads it as before,
    and refuses it with the same reasons.

    It accepts only what that reading accepts, with the same result: the JSON it reads is
    the JSON ``json.loads`` reads (the bytes must be strict UTF-8, and nothing that needs
    the value checks is plainly safe), bar NaN and Infinity, sent the long way here; the
    lax validation of pydantic's JSON mode is that of its Python mode on what ``json.loads``
    gives; and the type and version read ahead must be those the message ends up with.
    Half of a message's parse: one decode and one validation instead of a decode to dicts,
    then the payload's validation and the envelope's.
    """
    head = _HEAD.match(raw)
    if head is None:
        return None
    type_ = head[1].decode("ascii")
    version = int(head[2])
    if LATEST.get(type_) != version or b"NaN" in raw or b"Infinity" in raw:
        return None
    model = _one_pass_model(type_, version)
    try:
        parsed = model.model_validate_json(raw)
    except ValidationError:
        return None
    if parsed.type != type_ or parsed.schema_version != version:
        return None  # a key repeated further on: the last one counts
    if not parsed.run_id and REGISTRY[(type_, version)].TOPIC in RUN_TOPICS:
        return None  # refused, with its reason, by parse_dict
    # The same fields, validated the same way, as an Envelope (its subclass adds no field).
    object.__setattr__(parsed, "__class__", Envelope)
    return parsed


def _one_pass_model(type_: str, version: int) -> type[Envelope]:
    """Envelope with the payload of ``type_`` v``version`` (and a version no JSON float or
    boolean stands for, as in :func:`parse_dict`), made on first use."""
    model = _ONE_PASS.get((type_, version))
    if model is None:
        model = _ONE_PASS[(type_, version)] = create_model(
            f"{type_}V{version}Envelope", __base__=Envelope,
            schema_version=(StrictInt, Field(ge=1)),
            payload=(REGISTRY[(type_, version)], ...))
    return model


def parse_dict(data: dict[str, Any]) -> Envelope:
    type_ = data.get("type")
    version = data.get("schema_version")
    if not isinstance(type_, str) or not isinstance(version, int) or isinstance(version, bool):
        raise ContractError("missing or malformed 'type' / 'schema_version'")
    if type_ not in LATEST:
        raise ContractError(f"unknown message type {type_[:100]!r}")
    if (type_, version) not in REGISTRY:
        raise ContractError(f"unknown version {version} of {type_}; known up to {LATEST[type_]}")
    payload = data.get("payload")
    if not isinstance(payload, dict):
        raise ContractError("'payload' must be a JSON object")
    payload, version = _upcast(type_, version, payload)
    model = REGISTRY[(type_, version)]
    try:
        typed = model.model_validate(payload)
        envelope = Envelope.model_validate({**data, "schema_version": version, "payload": typed})
    except ValidationError as exc:
        raise ContractError(f"{type_} v{version} is invalid: {_errors(exc)}") from exc
    if model.TOPIC in RUN_TOPICS and not envelope.run_id:
        raise ContractError(f"{type_} has no run_id: every message on {model.TOPIC} belongs "
                            "to a run")
    return envelope


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
