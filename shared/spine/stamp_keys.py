"""An outbox's stamp as a key of its document's multikey key field (decision 37).

The sweep finds what a writer stamped in a window.  Rather than an index of its own on
``(outbox_by, outbox_at)`` (which the embedded MongoDB plans every written document over),
a stamped document carries one more key in the multikey field its collection indexes
already (``lookup``): ``outbox:<writer>:<bucket>``, the bucket being the stamp cut down to
:data:`BUCKET` (10 s) in a fixed, sortable text form.  A window is then the keys of the
buckets it touches, sought by ``$in`` of exact keys (what the embedded planner seeks on a
multikey index), and the documents found are filtered in memory by their exact
``outbox_by``/``outbox_at``: a bucket holds stamps on either side of a window's edges.

Pure: no database here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence, Set
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

PREFIX = "outbox:"
BUCKET = timedelta(seconds=10)
CHUNK = 1_000  # keys per query: a writer silent for a day is 8,640 buckets
# A window of more buckets (11.6 days) is read by scanning instead: a writer's mark that no
# sweep moved on for that long (everything stopped), once.
MAX_KEYS = 100 * CHUNK
_BUCKET_SECONDS = int(BUCKET.total_seconds())


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _bucket(at: datetime) -> int:
    """The bucket ``at`` falls in, as a number (a naive time is UTC, as MongoDB's are)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp() // _BUCKET_SECONDS)


@lru_cache(maxsize=1_024)
def _key(writer: str, bucket: int) -> str:
    """The key of a bucket: formatting a time costs more than the rest of a save's key,
    and a writer's saves share their bucket for 10 s."""
    start = datetime.fromtimestamp(bucket * _BUCKET_SECONDS, UTC)
    return f"{PREFIX}{writer}:{start:%Y-%m-%dT%H:%M:%S}"


def bucket_start(at: datetime) -> datetime:
    """The start of the bucket ``at`` falls in (UTC)."""
    return datetime.fromtimestamp(_bucket(at) * _BUCKET_SECONDS, UTC)


def stamp_key(writer: str, stamp: datetime) -> str:
    """The key of a document ``writer`` stamped ``stamp``."""
    return _key(writer, _bucket(stamp))


def window_keys(writer: str, after: datetime, until: datetime,
                limit: int = MAX_KEYS) -> list[str] | None:
    """The keys of every bucket holding a stamp in (after, until], oldest first (None:
    more than ``limit``)."""
    if until <= after:
        return []
    first, last = _bucket(after), _bucket(until)
    if last - first >= limit:
        return None
    return [_key(writer, bucket) for bucket in range(first, last + 1)]


def stamps_keys(writer: str, stamps: Iterable[datetime]) -> list[str]:
    """The keys of the buckets of these stamps, each once."""
    return sorted({stamp_key(writer, s) for s in stamps})


def chunks(keys: Sequence[str], size: int = CHUNK) -> Iterator[list[str]]:
    for start in range(0, len(keys), size):
        yield list(keys[start:start + size])


def with_stamp_key(keys: Iterable[str] | None, writer: str | None,
                   stamp: datetime | None) -> list[str]:
    """A document's keys with its stamp's key in place of any earlier one (none unstamped)."""
    kept = [k for k in keys or () if not k.startswith(PREFIX)]
    if writer is not None and stamp is not None:
        kept.append(stamp_key(writer, stamp))
    return kept


def stamped_in(doc: Mapping[str, Any], writer: str, after: datetime, until: datetime) -> bool:
    """Whether ``writer`` stamped ``doc`` in (after, until] (a bucket's other stamps: no)."""
    stamp = doc.get("outbox_at")
    return doc.get("outbox_by") == writer and stamp is not None and after < _utc(stamp) <= until


def stamped_with(doc: Mapping[str, Any], writer: str, stamps: Set[datetime]) -> bool:
    """Whether ``writer`` stamped ``doc`` with one of ``stamps`` (timezone-aware)."""
    stamp = doc.get("outbox_at")
    return doc.get("outbox_by") == writer and stamp is not None and _utc(stamp) in stamps
