"""Baton's wire contracts: one envelope, versioned payloads, the topic list.

Every Kafka message Baton produces or consumes is an :class:`Envelope` whose
payload is one of the registered ``(type, schema_version)`` models.  Older
versions are upcast at the edge by :func:`parse`, so handlers only ever see the
newest model of each type.
"""

from contracts.envelope import Envelope, new_event
from contracts.registry import (
    REGISTRY,
    ContractError,
    encode,
    header_pairs,
    headers_of,
    parse,
    parse_dict,
)

__all__ = [
    "REGISTRY",
    "ContractError",
    "Envelope",
    "encode",
    "header_pairs",
    "headers_of",
    "new_event",
    "parse",
    "parse_dict",
]
