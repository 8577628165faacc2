"""Turn the text an admin publishes (YAML or JSON) into plain data, safely.

YAML is read as YAML 1.2 would: only ``true``/``false`` are booleans (so ``on:`` stays the
key "on", not True) and dates stay text, so a YAML definition means the same as its JSON
twin.  Duplicate keys are errors rather than silently last-one-wins.

Bounded: the size of the text (``MAX_DEFINITION_BYTES``), how deep it nests (``MAX_DEPTH``,
checked on the text before a parser recurses) and how many values it expands to through
YAML aliases (``MAX_VALUES`` values, ``MAX_TEXT`` characters of text: a "billion laughs"
stops there).  What comes out is plain JSON
data, which MongoDB can store and the API can show: text keys, 64-bit integers, finite
numbers, valid Unicode; no YAML-only values such as ``!!binary``, ``!!set`` or ``.nan``.
"""

from __future__ import annotations

import json
import math
import re
from datetime import date
from typing import Any, Literal

import yaml
from yaml.nodes import MappingNode

from shared.definitions.depth import check_depth
from shared.definitions.issues import DefinitionError, Issue

MAX_DEFINITION_BYTES = 256 * 1024
MAX_VALUES = 100_000
MAX_TEXT = 4 * MAX_DEFINITION_BYTES  # characters of text (keys and strings), aliases expanded
MAX_DEPTH = 64
_INT64 = 2**63
_BOOL_TAG = "tag:yaml.org,2002:bool"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class _DefinitionLoader(yaml.CSafeLoader):
    """SafeLoader with YAML 1.2 booleans, no implicit dates and no duplicate keys.

    libyaml's parser (CSafeLoader): five times faster than the pure-Python one on a large
    document, and it does not recurse as the document nests.
    """

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first given on line {seen[key]})",
                    mark,
                )
            if isinstance(key, str | int | float | bool):
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


_DefinitionLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL_TAG, _TIMESTAMP_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_DefinitionLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_definition(text: str, *, fmt: Literal["yaml", "json"]) -> dict[str, Any]:
    """Parse a definition's text; syntax errors become a DefinitionError with line/column."""
    size = len(text.encode("utf-8"))
    if size > MAX_DEFINITION_BYTES:
        raise DefinitionError(
            [Issue("", f"the definition is {size} bytes; the limit is {MAX_DEFINITION_BYTES}")]
        )
    if fmt == "yaml":
        check_depth(text, MAX_DEPTH, _too_deep)
        data = _parse_yaml(text)
    elif fmt == "json":
        data = _parse_json(text)
    else:
        raise ValueError(f"unknown format {fmt!r}; use 'yaml' or 'json'")
    if not isinstance(data, dict):
        kind = "nothing" if data is None else f"a {type(data).__name__}"
        raise DefinitionError(
            [Issue("", f"a definition is a mapping of fields (name, stages, ...), not {kind}")]
        )
    _check_plain_data(data)
    return data


def _too_deep(where: str = "") -> DefinitionError:
    return DefinitionError([Issue(where, f"the definition nests more than {MAX_DEPTH} levels")])


def _parse_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_DefinitionLoader)  # a CSafeLoader subclass
    except RecursionError:  # indentation nested hundreds deep
        raise _too_deep() from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        raise DefinitionError([Issue(where, f"YAML syntax error: {problem}{context}")]) from None
    except yaml.YAMLError as exc:
        raise DefinitionError([Issue("", f"YAML syntax error: {exc}")]) from None


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise DefinitionError([Issue(where, f"JSON syntax error: {exc.msg}")]) from None
    except _DuplicateKeyError as exc:
        raise DefinitionError([Issue("", f"JSON error: duplicate key {exc.key!r}")]) from None
    except RecursionError:
        raise _too_deep() from None
    except ValueError as exc:  # NaN, Infinity; an integer of more than 4300 digits
        message = str(exc).split("; use sys.")[0]
        raise DefinitionError([Issue("", f"JSON error: {message}")]) from None


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


Where = tuple[Any, str | int] | None  # (the parent's Where, key or index): a path, built lazily


def _check_plain_data(data: dict[str, Any]) -> None:
    """Plain JSON data only, at most MAX_VALUES values and MAX_TEXT characters of text
    (aliases expanded), at most MAX_DEPTH deep."""
    count = characters = 0
    pending: list[tuple[Any, Where, int]] = [(data, None, 0)]
    while pending:
        value, where, depth = pending.pop()
        count += 1
        if count > MAX_VALUES:
            raise DefinitionError(
                [Issue("", f"the definition expands to more than {MAX_VALUES} values (aliases?)")]
            )
        if depth > MAX_DEPTH:
            raise _too_deep(_path(where))
        problem = _not_plain(value)
        if problem:
            raise DefinitionError([Issue(_path(where), problem)])
        if isinstance(value, str):
            characters += len(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise DefinitionError(
                        [Issue(_path(where), f"the key {_shown(key)} is not text; quote it")]
                    )
                if "\x00" in key or _invalid_text(key):
                    raise DefinitionError(
                        [Issue(_path(where), f"the key {_shown(key)} is not valid text")]
                    )
                characters += len(key)
                pending.append((item, (where, key), depth + 1))
        elif isinstance(value, list):
            pending.extend((item, (where, i), depth + 1) for i, item in enumerate(value))
        if characters > MAX_TEXT:
            raise DefinitionError(
                [Issue("", f"the definition expands to more than {MAX_TEXT} characters of text"
                           " (aliases?)")]
            )


def _path(where: Where) -> str:
    parts: list[str | int] = []
    while where is not None:
        where, part = where
        parts.append(part)
    path = ""
    for part in reversed(parts):
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            shown = part if len(part) <= 60 else part[:60] + "..."
            path += f".{shown}" if path else shown
    return path


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:80]}... ({len(text)} characters)"


def _not_plain(value: Any) -> str | None:
    """Why a value is not plain JSON data, or None when it is."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    if isinstance(value, int):
        return None if -_INT64 <= value < _INT64 else f"the number {value} is too big (64 bits)"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value} is not a number JSON can hold"
    if isinstance(value, str):
        return "the text is not valid Unicode" if _invalid_text(value) else None
    if isinstance(value, date):
        return f"{value} is a date/time value; quote it to make it text"
    return f"a {type(value).__name__} value is not allowed; use text, numbers, lists or maps"


def _invalid_text(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
