"""Conditions and templates in CEL (Common Expression Language).

CEL has no loops, no side effects and cannot reach Python internals: names resolve only in
the context given, which holds plain data.  What CEL does not bound by itself we bound here:

- the source: at most ``MAX_EXPRESSION_LENGTH`` characters and ``MAX_NESTING`` levels of
  brackets, with comprehension macros (``all``, ``exists``, ``map``, ``filter``...) nested
  at most ``MAX_MACRO_NESTING`` deep;
- the work: the library cannot be interrupted (it holds the GIL while it runs) and its
  ``map`` and ``filter`` take time quadratic in the list they build, so before running an
  expression that uses a macro we bound its work by the size of the data it reads
  (``MAX_WORK``, see :func:`value_limit`) and refuse it, with a plain message, when that is
  too much.

Every failure is an :class:`ExpressionError`.  Programs are compiled once and cached
(definitions are immutable).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cel

MAX_EXPRESSION_LENGTH = 2000
MAX_NESTING = 32  # brackets inside brackets: ( [ {
MAX_MACRO_NESTING = 2  # a comprehension inside a comprehension, no deeper
MAX_WORK = 3_000_000  # half a second at worst (measured: xs.map(x, xs), 144 values)
ROOTS = frozenset({"record", "vars", "steps", "run", "new", "old", "outcome"})
MACROS = frozenset({"all", "exists", "exists_one", "map", "filter", "transformList",
                    "transformMap", "transformMapEntry", "sortBy"})
BUILDERS = MACROS - {"all", "exists", "exists_one"}  # these build a list or a map
_TEMPLATE = re.compile(r"\$\{(.+?)\}")
# "${secrets.NAME}": not an expression but a secret named in the definition, left as written
# here and filled in only by the step-runner (services/step_runner/secrets.py).
SECRET_REFERENCE = re.compile(r"\$\{secrets\.([A-Za-z_][A-Za-z0-9_]{0,127})\}")
SECRET_MARK = "${secrets."
_OPENERS = {"(": ")", "[": "]", "{": "}"}
_INDEXABLE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_)]")


class ExpressionError(ValueError):
    """An expression that does not compile or cannot be evaluated; the text says where."""


@dataclass(frozen=True)
class Shape:
    """What the source says about an expression's cost, read without evaluating it."""

    nesting: int  # deepest bracket nesting
    macros: int  # deepest comprehension nesting (0: none)
    builds: bool  # a map/filter builds a collection
    reads: bool  # a macro's arguments read a context name (more than their element)
    writes: bool  # a macro's arguments write a list or a map
    literal_values: int  # an upper bound on the values written in the source


class Program:
    """A compiled expression that checks its work against the data before it runs."""

    def __init__(self, source: str, compiled: Any, shape: Shape) -> None:
        self.source = source
        self.compiled = compiled
        self.shape = shape
        self.names = frozenset(compiled.references()["variables"])

    def references(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = self.compiled.references()
        return result

    def execute(self, context: Mapping[str, Any]) -> Any:
        if self.shape.macros:
            self._check_work(context)
        try:
            return self.compiled.execute(dict(context))
        except Exception as exc:  # KeyError, TypeError, ZeroDivisionError, OverflowError...
            text = str(exc) or type(exc).__name__
            raise ExpressionError(f"{_short(self.source)} failed: {text[:1000]}") from exc
        except BaseException as exc:  # a panic inside the library (pyo3's PanicException)
            if type(exc).__name__ != "PanicException":
                raise
            raise ExpressionError(f"{_short(self.source)} failed: {exc}") from None

    def _check_work(self, context: Mapping[str, Any]) -> None:
        shape = self.shape
        limit = value_limit(shape)
        values = shape.literal_values + count_values(  # counted no further than the limit
            [v for k, v in context.items() if k in self.names], limit + 1
        ) - 1
        if values > limit:
            kind = "map/filter" if shape.builds else "all/exists"
            raise ExpressionError(
                f"{_short(self.source)} is too costly to evaluate: its {kind} macros"
                f" ({shape.macros} deep) would work over {values} values or more, and at most"
                f" {limit} are allowed for this expression; give it less data or simplify it"
            )


def value_limit(shape: Shape) -> int:
    """The most values an expression may read, so that its work stays under ``MAX_WORK``.

    Work grows as values ** (one per nested macro, one more when a macro's body reads more
    data than its element, as in ``xs.all(x, x in ys)``, and one more when a list is built:
    this CEL library copies the list it builds at every step), times the values of the lists
    and maps the body writes.
    """
    power = shape.macros + (1 if shape.reads else 0) + (1 if shape.builds else 0)
    factor = shape.literal_values if shape.writes else 1
    return int((MAX_WORK / factor) ** (1 / max(power, 1)))


def count_values(data: Any, limit: int) -> int:
    """How many values (scalars, lists and maps, their items) are in ``data``, up to limit."""
    count = 0
    pending = [data]
    while pending and count < limit:
        value = pending.pop()
        count += 1
        if isinstance(value, Mapping):
            pending.extend(value.values())
        elif isinstance(value, list | tuple):
            pending.extend(value)
    return count


def shape_of(source: str) -> Shape:
    """Bracket and macro nesting, read from the source with string literals skipped."""
    stack: list[bool] = []  # one per open bracket: does it open a macro's arguments?
    nesting = macros = commas = 0
    builds = reads = writes = False
    i, n = 0, len(source)
    while i < n:
        char = source[i]
        if char in "'\"":
            i = _skip_string(source, i)
            continue
        if char.isalpha() or char == "_" or char.isdigit():
            end = i
            while end < n and (source[end].isalnum() or source[end] == "_"):
                end += 1
            # a context name read inside a macro's arguments (not a member: ``x.vars``)
            if any(stack) and not char.isdigit() and source[i:end] in ROOTS:
                reads = reads or _previous(source, i) != "."
            i = end
            continue
        if char in _OPENERS:
            name = _called_member(source, i) if char == "(" else None
            macro = name in MACROS
            if any(stack) and char in "[{" and _previous(source, i) not in _INDEXABLE:
                writes = True  # a list or map written inside a macro's arguments
            stack.append(macro)
            builds = builds or name in BUILDERS
            nesting = max(nesting, len(stack))
            macros = max(macros, sum(stack))
            if nesting > MAX_NESTING:
                raise ExpressionError(
                    f"nested more than {MAX_NESTING} brackets deep (at column {i + 1})"
                )
        elif char in ")]}" and stack:
            stack.pop()
        elif char == ",":
            commas += 1
        i += 1
    return Shape(nesting, macros, builds, reads, writes, commas + 1)


def _previous(source: str, index: int) -> str:
    """The character before ``index``, spaces skipped ("" at the start)."""
    while index > 0 and source[index - 1].isspace():
        index -= 1
    return source[index - 1] if index > 0 else ""


def _called_member(source: str, paren: int) -> str | None:
    """For ``xs.map (`` with ``paren`` at the '(', "map"; None when no ``.name`` is there."""
    end = paren
    while end > 0 and source[end - 1].isspace():
        end -= 1
    start = end
    while start > 0 and (source[start - 1].isalnum() or source[start - 1] == "_"):
        start -= 1
    dot = start
    while dot > 0 and source[dot - 1].isspace():
        dot -= 1
    if start == end or dot == 0 or source[dot - 1] != ".":
        return None
    return source[start:end]


def _skip_string(source: str, start: int) -> int:
    """The index just past the string literal that starts at ``start`` (or the end)."""
    quote = source[start]
    raw = start > 0 and source[start - 1] in "rR"
    delimiter = quote * 3 if source.startswith(quote * 3, start) else quote
    i = start + len(delimiter)
    while i < len(source):
        if source[i] == "\\" and not raw:
            i += 2
            continue
        if source.startswith(delimiter, i):
            return i + len(delimiter)
        i += 1
    return len(source)


@lru_cache(maxsize=4096)
def compile_expression(source: str) -> Program:
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(
            f"expression is {len(source)} characters; the limit is {MAX_EXPRESSION_LENGTH}"
        )
    shape = shape_of(source)
    if shape.macros > MAX_MACRO_NESTING:
        raise ExpressionError(
            f"comprehensions (all, exists, map, filter...) are nested {shape.macros} deep;"
            f" the limit is {MAX_MACRO_NESTING}"
        )
    try:
        compiled = cel.compile(source)
    except Exception as exc:  # ValueError with the position; anything else is as bad
        raise ExpressionError(_first_lines(str(exc)) or "invalid expression") from exc
    except BaseException as exc:  # a panic inside the library (pyo3's PanicException)
        if type(exc).__name__ != "PanicException":
            raise
        raise ExpressionError(f"invalid expression: {exc}") from None
    return Program(source, compiled, shape)


def evaluate(source: str, context: Mapping[str, Any]) -> Any:
    return compile_expression(source).execute(context)


def holds(source: str | None, context: Mapping[str, Any], *, default: bool = True) -> bool:
    """Evaluate a condition; a missing condition is ``default``; a non-bool is an error."""
    if source is None or not source.strip():
        return default
    result = evaluate(source, context)
    if not isinstance(result, bool):
        raise ExpressionError(f"{source!r} gave {type(result).__name__}, not true/false")
    return result


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Fill '${expr}' templates in strings, lists and dicts.

    A string that is exactly one template keeps the expression's type; otherwise the
    results are joined as text.  Secret references (``${secrets.NAME}``) stay as written;
    a value from the run that would write one is refused, so that run data can never name
    a secret for the step-runner to fill in.
    """
    if isinstance(value, str):
        found = list(_TEMPLATE.finditer(value))
        # "${a}" keeps its type; "${a} and ${b}" is text (fullmatch alone would take
        # "a} and ${b" for one expression).
        if len(found) == 1 and found[0].span() == (0, len(value)):
            if is_secret_reference(found[0].group(0)):
                return value
            return _from_data(evaluate(found[0].group(1), context), found[0].group(1))
        return _TEMPLATE.sub(lambda m: _fill(m, context), value)
    if isinstance(value, list):
        return [render(v, context) for v in value]
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    return value


def is_secret_reference(template: str) -> bool:
    """Whether a template (with its ``${`` and ``}``) is one secret reference."""
    return SECRET_REFERENCE.fullmatch(template) is not None


def _fill(match: re.Match[str], context: Mapping[str, Any]) -> str:
    if is_secret_reference(match.group(0)):
        return match.group(0)
    return str(_from_data(evaluate(match.group(1), context), match.group(1)))


def _from_data(value: Any, source: str) -> Any:
    """The value, unless some text in it names a secret (looked for everywhere inside)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if SECRET_MARK in item:
                raise ExpressionError(
                    f"{_short(source)} gave text holding {SECRET_MARK!r}: secrets are named"
                    " in the definition only, never by a run's data"
                )
        elif isinstance(item, Mapping):
            pending.extend(item.values())
            pending.extend(k for k in item if isinstance(k, str))
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return value


def template_expressions(value: Any) -> list[str]:
    """Every '${expr}' inside a value, for publish-time checking (secret references are
    not expressions: see :func:`is_secret_reference`)."""
    if isinstance(value, str):
        return [m.group(1) for m in _TEMPLATE.finditer(value)
                if not is_secret_reference(m.group(0))]
    if isinstance(value, list):
        return [e for v in value for e in template_expressions(v)]
    if isinstance(value, dict):
        return [e for v in value.values() for e in template_expressions(v)]
    return []


def _short(source: str) -> str:
    return repr(source if len(source) <= 200 else source[:200] + "...")


def _first_lines(text: str) -> str:
    return "\n".join(text.splitlines()[:3])
