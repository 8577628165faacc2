"""Values a document carries for its writer alone, packed: one BSON value each.

What is never queried inside (a run's or a work item's outbox messages, a run's history
entries not paged yet and each active step's dispatch) MongoDB only keeps.  Packed, each is
one binary value instead of a tree of fields, which the embedded server would otherwise
decode, copy and encode again on every update of the document: about half of its CPU for a
run in review (decision 27).  Documents written before hold them as subdocuments;
:func:`opened` reads both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC
from typing import Any

import bson
from bson.codec_options import CodecOptions

# As the services' client reads documents (shared/mongo.py): times come back aware, in UTC.
CODEC: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True, tzinfo=UTC)


def packed(value: Mapping[str, Any]) -> bytes:
    return bson.encode(value)


def opened(value: bytes | Mapping[str, Any]) -> dict[str, Any]:
    """A packed value, or one a document written before packing holds as a subdocument."""
    if isinstance(value, bytes):
        return bson.decode(value, codec_options=CODEC)
    return dict(value)


def opened_all(values: Iterable[bytes | Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    return [opened(value) for value in values or ()]
