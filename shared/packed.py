"""Values a document carries for its writer alone, packed: one BSON value each.

What is never queried inside (a run's or a work item's outbox messages, a run's history
entries not paged yet and each active step's dispatch) MongoDB only keeps.  Packed, each is
one binary value instead of a tree of fields, which the embedded server would otherwise
decode, copy and encode again on every update of the document: about half of its CPU for a
run in review (decision 27).  Documents written before hold them as subdocuments;
:func:`opened` reads both.  A list of such values (a run's pending history) is itself one
packed value (:func:`packed_list`, decision 35); :func:`opened_all` reads it and the lists
written before.

:class:`Packing` goes one step further for a whole document: the fields no query, sort,
projection or index of the server names go into one packed value beside those it needs
(a work item's, decision 32).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import bson
from bson.codec_options import CodecOptions

# As the services' client reads documents (shared/mongo.py): times come back aware, in UTC.
CODEC: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True, tzinfo=UTC)
ITEMS = "items"  # the one field of a packed list


def packed(value: Mapping[str, Any]) -> bytes:
    return bson.encode(value)


def packed_each(values: Sequence[Mapping[str, Any]]) -> list[bytes]:
    """``[packed(v) for v in values]`` in one encoding: each value is the same bytes inside
    a list as on its own (BSON embeds a document as it is), cut out of one encoded list.
    A call of the encoder costs about a microsecond before it writes anything, and a run's
    save packs several history entries (a tenth less for a save's entries).

    A value with an ``_id`` is packed on its own: the encoder moves ``_id`` first only in a
    document of its own.
    """
    if len(values) < 2 or any("_id" in value for value in values):
        return [packed(value) for value in values]
    raw = bson.encode({"v": values})
    cut = []
    at = 11  # past the list's length, type, name ("v") and its own length
    for index in range(len(values)):
        at += len(str(index)) + 2  # the element's type and name (its index)
        end = at + int.from_bytes(raw[at:at + 4], "little")
        cut.append(raw[at:end])
        at = end
    return cut


def opened(value: bytes | Mapping[str, Any]) -> dict[str, Any]:
    """A packed value, or one a document written before packing holds as a subdocument."""
    if isinstance(value, bytes):
        return bson.decode(value, codec_options=CODEC)
    return dict(value)


def packed_list(values: Sequence[bytes]) -> bytes:
    """Packed values in one packed value: the server walks one node instead of one each
    (decision 35)."""
    return bson.encode({ITEMS: list(values)})


def items_of(values: bytes | Iterable[bytes | Mapping[str, Any]] | None
             ) -> list[bytes | Mapping[str, Any]]:
    """The values of :func:`packed_list`, or of a list written before (each packed, or a
    subdocument)."""
    if not values:
        return []
    if isinstance(values, bytes):
        return list(bson.decode(values, codec_options=CODEC)[ITEMS])
    return list(values)


def opened_all(values: bytes | Iterable[bytes | Mapping[str, Any]] | None
               ) -> list[dict[str, Any]]:
    return [opened(value) for value in items_of(values)]


@dataclass(frozen=True)
class Packing:
    """Which top-level fields of a document its store keeps inside one packed value ``into``.

    The store packs what it writes and opens what it reads, so its callers see documents
    as they were before: :meth:`open` also reads a document written before packing (the
    fields in place, no packed value).  Only names the server never looks at belong here:
    it can neither find, sort, index nor project by what is inside.
    """

    fields: frozenset[str] = frozenset()
    into: str = "state"  # as a run document names its own (the coordinator's store)

    def pack(self, doc: dict[str, Any]) -> dict[str, Any]:
        inside = {k: v for k, v in doc.items() if k in self.fields}
        if not inside:
            return doc
        kept = {k: v for k, v in doc.items() if k not in self.fields}
        return {**kept, self.into: packed(inside)}

    def open(self, doc: dict[str, Any], leaving_out: Iterable[str] = ()) -> dict[str, Any]:
        """``doc`` with the packed fields in place, but those in ``leaving_out`` (what a
        projection left out: the server could only leave the packed value out whole)."""
        value = doc.pop(self.into, None)
        if value is not None:
            doc.update(opened(value))
        for name in leaving_out:
            doc.pop(name, None)
        return doc

    def leaving_out(self, names: Iterable[str]) -> dict[str, int]:
        """The projection that leaves ``names`` out, as the server can: the names of packed
        fields are dropped from it (:meth:`open` drops those fields afterwards)."""
        return {name: 0 for name in names if name not in self.fields}
