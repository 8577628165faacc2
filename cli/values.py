"""Values from the command line (``key=value``) and from files (JSON or YAML)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from cli.errors import UsageError

_BOOL_TAG = "tag:yaml.org,2002:bool"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


@cache
def _yaml12_loader() -> Any:
    """SafeLoader reading YAML the 1.2 way: only true/false are booleans, dates stay text.

    Built on first use: only commands that read a file pay for importing yaml.
    """
    import yaml

    class Yaml12Loader(yaml.SafeLoader):
        pass

    Yaml12Loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL_TAG, _TIMESTAMP_TAG)]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Yaml12Loader.add_implicit_resolver(
        _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    return Yaml12Loader


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_value(text: str) -> Any:
    """JSON when it parses (numbers, true/false, null, objects, lists, "quoted"), else the text."""
    try:
        return json.loads(text, parse_constant=_no_constants)
    except ValueError:
        return text


def parse_pairs(items: Sequence[str], option: str) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``; a malformed or repeated key: usage error."""
    result: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"{option} {item!r}: expected key=value")
        if key in result:
            raise UsageError(f"{option}: {key!r} is given more than once")
        result[key] = parse_value(raw)
    return result


def parse_text(text: str, *, name: str) -> Any:
    """JSON for ``*.json``, else YAML (a superset of JSON); syntax errors are usage errors."""
    if name.lower().endswith(".json"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise UsageError(f"{name} is not valid JSON: {exc}") from exc
    import yaml

    try:
        return yaml.load(text, Loader=_yaml12_loader())  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" (line {mark.line + 1}, column {mark.column + 1})"
        problem = getattr(exc, "problem", None) or str(exc)
        raise UsageError(f"{name} is not valid YAML{where}: {problem}") from exc


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise UsageError(f"no such file: {path}") from exc
    except IsADirectoryError as exc:
        raise UsageError(f"{path} is a directory, not a file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc


def load_mapping(path: Path) -> dict[str, Any]:
    """A file holding one JSON or YAML mapping (an inputs file, a values file, a directory)."""
    data = parse_text(read_text(path), name=str(path))
    if not isinstance(data, dict):
        kind = "nothing" if data is None else f"a {type(data).__name__}"
        raise UsageError(f"{path} should hold a mapping of names to values, not {kind}")
    return data


def merged(file: Path | None, pairs: Sequence[str], option: str) -> dict[str, Any]:
    """A file's mapping, overridden by ``key=value`` pairs from the command line."""
    result = load_mapping(file) if file is not None else {}
    result.update(parse_pairs(pairs, option))
    return result
