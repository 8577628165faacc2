"""Turn the text an admin publishes (YAML or JSON) into plain data, safely.

YAML is read as YAML 1.2 would: only ``true``/``false`` are booleans (so ``on:`` stays the
key "on", not True) and dates stay text, so a YAML definition means the same as its JSON
twin.  Duplicate keys are errors rather than silently last-one-wins, and the size of the
text and of what it expands to (aliases) is bounded.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import yaml
from yaml.nodes import MappingNode

from shared.definitions.issues import DefinitionError, Issue

MAX_DEFINITION_BYTES = 256 * 1024
MAX_VALUES = 100_000
_BOOL_TAG = "tag:yaml.org,2002:bool"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class _DefinitionLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans, no implicit dates and no duplicate keys."""

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
    _check_expanded_size(data)
    return data


def _parse_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_DefinitionLoader)  # a SafeLoader subclass
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
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise DefinitionError([Issue(where, f"JSON syntax error: {exc.msg}")]) from None
    except _DuplicateKeyError as exc:
        raise DefinitionError([Issue("", f"JSON error: duplicate key {exc.key!r}")]) from None


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


def _check_expanded_size(data: Any) -> None:
    """YAML aliases share one object many times; bound what walking the whole tree costs."""
    count = 0
    pending = [data]
    while pending:
        value = pending.pop()
        count += 1
        if count > MAX_VALUES:
            raise DefinitionError(
                [Issue("", f"the definition expands to more than {MAX_VALUES} values (aliases?)")]
            )
        if isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
