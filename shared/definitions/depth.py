"""How deep a YAML text nests, read on the text before any parser sees it.

A parser that recurses as the document nests must never see thousands of levels: libyaml
before PyYAML 6.0.4 overflowed the C stack on them (the process died), and pure-Python
parsers hit the recursion limit slowly.  The count errs low rather than high (a valid
definition is never refused here); the check on the parsed data catches the rest with
its path.
"""

from __future__ import annotations

import re
from collections.abc import Callable


def check_depth(text: str, limit: int, too_deep: Callable[[str], Exception]) -> None:
    """Raise ``too_deep("line L, column C")`` where the nesting first passes ``limit``.

    Counted per line: the indentation levels open around it, the compact indicators it
    starts with (``- - - a`` nests three sequences on one line) and the open brackets, with
    quoted text, comments and block scalars (``|``, ``>``) skipped.  Only the characters
    that matter are visited (a regular expression finds them), so the scan stays cheap.
    """
    depth = 0  # open brackets
    quote = ""
    indents: list[int] = []  # the indentation of each open block level
    block_scalar = -1  # the indentation of the line that opened a block scalar, or -1
    line, line_start, n = 1, 0, len(text)
    i = 0
    at_line_start = True
    while i <= n:
        if at_line_start:
            at_line_start = False
            end = text.find("\n", i)
            end = n if end < 0 else end
            content = text[i:end]
            stripped = content.lstrip(" ")
            indent = len(content) - len(stripped)
            if block_scalar >= 0 and (not stripped.strip() or indent > block_scalar):
                if end >= n:
                    return
                i, line, line_start, at_line_start = end + 1, line + 1, end + 1, True
                continue
            block_scalar = -1
            if stripped and not stripped.startswith("#") and depth == 0:
                while indents and indents[-1] >= indent:
                    indents.pop()
                indents.append(indent)
                match = _COMPACT.match(stripped)
                levels = len(indents)
                for offset, mark in enumerate(match.group(0) if match else ""):
                    levels += mark in "-?:"
                    if levels > limit:
                        raise too_deep(f"line {line}, column {indent + offset + 1}")
                if levels > limit:
                    raise too_deep(f"line {line}, column {indent + 1}")
                if _BLOCK_SCALAR.search(_without_comment(stripped)):
                    block_scalar = indent
        found = _SPECIAL.search(text, i)
        if found is None:
            return
        j = found.start()
        char = text[j]
        i = j + 1
        if char == "\n":
            line, line_start = line + 1, j + 1
            at_line_start = not quote
        elif quote:
            if char == "\\" and quote == '"':
                i = j + 2
            elif char == quote:
                if quote == "'" and text.startswith("''", j):
                    i = j + 2
                else:
                    quote = ""
        elif char in "\"'":
            if j == 0 or text[j - 1] in " \t\n[{,:-?":
                quote = char
        elif char == "#":
            if j == 0 or text[j - 1] in " \t\n":
                end = text.find("\n", j)
                i = n if end < 0 else end
        elif char in "[{":
            depth += 1
            if depth > limit:
                raise too_deep(f"line {line}, column {j - line_start + 1}")
        elif char in "]}":
            depth = max(0, depth - 1)


_SPECIAL = re.compile(r"[\n\"'#\[\]{}\\]")
_COMPACT = re.compile(r"(?:[-?:](?: +|$))*")  # "- - ? " : the indicators a line starts with
_BLOCK_SCALAR = re.compile(r"(?:^|[\s:])[|>][0-9+-]*\s*$")


def _without_comment(content: str) -> str:
    cut = content.find(" #")
    return content if cut < 0 else content[:cut]
