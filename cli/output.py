"""Plain-text rendering: tables, label/value blocks, times and JSON for scripts."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import typer

MAX_CELL = 60
ELLIPSIS = "…"


def fmt_time(value: Any) -> str:
    """An ISO timestamp as ``YYYY-MM-DD HH:MM:SS`` in UTC; anything else as text."""
    if value in (None, ""):
        return "-"
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(value: Any) -> str:
    """Seconds as the stored definitions write them ("172800s") read as "2d"; "5400s" as "1h30m"."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(value).strip())
    if match is None:
        return str(value)
    total = float(match[1])
    if total == 0 or total != int(total):
        return f"{total:g}s"
    seconds, parts = int(total), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def fmt_value(value: Any) -> str:
    """A value as it reads in a table cell."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(fmt_value(v) for v in value) if value else "-"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), default=str)
    text = str(value)
    return " ".join(text.split()) if "\n" in text or "\t" in text else text


def truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + ELLIPSIS


def render_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], *, max_cell: int = MAX_CELL
) -> str:
    """Columns padded to their widest cell, two spaces apart; long cells are cut with …."""
    cells = [[truncate(fmt_value(c) if not isinstance(c, str) else c, max_cell) for c in row]
             for row in rows]
    head = [h.upper() for h in headers]
    widths = [len(h) for h in head]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
              for row in cells]
    return "\n".join(lines)


def render_fields(pairs: Sequence[tuple[str, Any]]) -> str:
    """``label:  value`` lines with the values aligned; values are shown whole."""
    if not pairs:
        return ""
    width = max(len(label) for label, _ in pairs) + 1
    return "\n".join(
        f"{(label + ':').ljust(width)}  {v if isinstance(v, str) else fmt_value(v)}".rstrip()
        for label, v in pairs
    )


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


def echo_json(data: Any) -> None:
    typer.echo(to_json(data))


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], empty: str) -> None:
    """The table, or a one-line note when there is nothing to show."""
    typer.echo(render_table(headers, rows) if rows else empty)


def plural(count: int, word: str, many: str | None = None) -> str:
    return f"{count} {word if count == 1 else (many or word + 's')}"
