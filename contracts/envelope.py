"""The envelope every Baton message travels in."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SerializeAsAny


class Payload(BaseModel):
    """Base of every event and command payload.

    ``TYPE`` and ``VERSION`` name the payload on the wire; ``TOPIC`` is where it flows.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    TYPE: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1
    TOPIC: ClassVar[str] = ""


class Envelope(BaseModel):
    """One message: identity, causality and a typed payload.

    ``run_id`` is the Kafka key for everything about a run, so one partition (and
    so one coordinator replica) sees a run's messages in order.  Upstream record
    changes have no run yet; they are keyed by ``key`` (object type and record id).

    ``occurred_at`` (like every date-time in the contracts) must carry its zone: a time
    without one is refused at the edge rather than read as UTC, since the services compare
    times from many producers and a guess would order events wrongly.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(min_length=1, max_length=100)
    type: str = Field(min_length=1, max_length=100)
    schema_version: int = Field(ge=1)
    occurred_at: AwareDatetime
    run_id: str | None = Field(default=None, max_length=100)
    key: str | None = Field(default=None, max_length=300)
    correlation_id: str = Field(min_length=1, max_length=100)
    causation_id: str | None = Field(default=None, max_length=100)
    producer: str = Field(min_length=1, max_length=100)
    payload: SerializeAsAny[Payload]

    @property
    def partition_key(self) -> str:
        return self.run_id or self.key or self.event_id


def new_event_id() -> str:
    return uuid.uuid4().hex


def new_event(
    payload: Payload,
    *,
    producer: str,
    run_id: str | None = None,
    key: str | None = None,
    cause: Envelope | None = None,
    occurred_at: datetime | None = None,
    event_id: str | None = None,
    correlation_id: str | None = None,
) -> Envelope:
    """Build an envelope; ``cause`` carries the correlation id forward (a given
    ``correlation_id`` wins: an event about something that keeps its run's).

    ``event_id`` may be given to make the id deterministic (derived from the cause),
    which is what makes a re-run handler emit the same ids and so stay idempotent.
    """
    eid = event_id or new_event_id()
    fields = {
        "event_id": eid,
        "type": payload.TYPE,
        "schema_version": payload.VERSION,
        "occurred_at": occurred_at or (cause.occurred_at if cause else datetime.now(UTC)),
        "run_id": run_id if run_id is not None else (cause.run_id if cause else None),
        "key": key,
        "correlation_id": correlation_id or (cause.correlation_id if cause else eid),
        "causation_id": cause.event_id if cause else None,
        "producer": producer,
        "payload": payload,
    }
    if _valid_as_is(fields):
        return _envelope_of(fields)
    return Envelope(**fields)  # validated: raises as it always did


def _longest(name: str) -> int:
    """A text field's ``max_length``, as the envelope's model declares it."""
    return int(next(m.max_length for m in Envelope.model_fields[name].metadata
                    if getattr(m, "max_length", None) is not None))


# What the envelope's fields allow, for the check of :func:`_valid_as_is`: read off the
# model, so the check cannot drift from the validation it stands in for.
_IDS = tuple((name, _longest(name)) for name in ("event_id", "type", "correlation_id",
                                                  "producer"))  # at least 1 character too
_OPTIONAL_IDS = tuple((name, _longest(name)) for name in ("run_id", "causation_id", "key"))
_ALL_FIELDS = frozenset(Envelope.model_fields)
_new = object.__new__
_set = object.__setattr__


def _valid_as_is(fields: dict[str, Any]) -> bool:
    """Whether validating ``fields`` would keep every value as it is: each of its exact
    type and within its field's bounds, the time with a zone, the payload a model.

    Any doubt (a subclass of str, a naive time, a long id) answers False, and the envelope
    is validated as before.  Every message a service publishes is built here, from values
    that nearly always come from a validated message and a payload model: validating them
    again cost a service about 2 % of its CPU.
    """
    for name, longest in _IDS:
        value = fields[name]
        if type(value) is not str or not 0 < len(value) <= longest:
            return False
    for name, longest in _OPTIONAL_IDS:
        value = fields[name]
        if value is not None and (type(value) is not str or len(value) > longest):
            return False
    version, at = fields["schema_version"], fields["occurred_at"]
    return (type(version) is int and version >= 1
            and type(at) is datetime and at.utcoffset() is not None
            and isinstance(fields["payload"], Payload))


def _envelope_of(fields: dict[str, Any]) -> Envelope:
    """The envelope validation would build of ``fields`` (:func:`_valid_as_is`): the same
    values in field order, every field set (``model_construct``, without its per-field
    walk, as ``copied`` does for the coordinator's states)."""
    envelope = _new(Envelope)
    _set(envelope, "__dict__", fields)
    _set(envelope, "__pydantic_fields_set__", set(_ALL_FIELDS))
    _set(envelope, "__pydantic_extra__", None)
    _set(envelope, "__pydantic_private__", None)
    return envelope


_DERIVED_NAMESPACE = uuid.NAMESPACE_URL.bytes


def derived_id(cause_id: str, *parts: Any) -> str:
    """A deterministic event id for the n-th effect of a cause (idempotent re-runs).

    It is ``uuid.uuid5(uuid.NAMESPACE_URL, name).hex``, computed without the UUID object,
    whose construction cost twice the hash: every message a service publishes has one.
    """
    name = ":".join([cause_id, *map(str, parts)]).encode()
    digest = bytearray(
        hashlib.sha1(_DERIVED_NAMESPACE + name, usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    return digest.hex()
