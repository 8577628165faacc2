"""Durations as people write them in definitions: 30s, 5m, 2h, 3d, 1w, or ISO 8601."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
LONGEST = timedelta(days=36_500)  # a hundred years; timedelta itself stops near 2.7 million
_SHORT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")


def parse_duration(value: Any) -> timedelta:
    try:
        duration = _parse(value)
    except OverflowError:  # 99999999999d: timedelta cannot hold it
        duration = LONGEST * 2
    if abs(duration) > LONGEST:
        raise ValueError(f"{_shown(value)} is longer than the longest duration, 36500d")
    return duration


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:40]}..."


def _parse(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a text like '30s', '2h', '3d'")
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _SHORT.match(value)
        if match:
            return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
        iso = re.match(
            r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$", value.strip()
        )
        if iso and any(iso.groups()):
            d, h, m, s = (float(g) if g else 0.0 for g in iso.groups())
            return timedelta(days=d, hours=h, minutes=m, seconds=s)
    raise ValueError(
        f"{_shown(value)} is not a duration; write e.g. '30s', '5m', '2h', '3d' or 'PT1H'"
    )


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(lambda td: f"{td.total_seconds():g}s", return_type=str),
]
