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
    quoted text, comments and block scalars (``|``, ``>``) skipped.
    """
    depth = 0  # open brackets
    quote = ""
    indents: list[int] = []  # the indentation of each open block level
    block_scalar = -1  # the indentation of the line that opened a block scalar, or -1
    line, column = 1, 0
    i, n = 0, len(text)
    while i < n:
        if (i == 0 or text[i - 1] == "\n") and not quote:
            end = text.find("\n", i)
            end = n if end < 0 else end
            content = text[i:end]
            indent = len(content) - len(content.lstrip(" "))
            if block_scalar >= 0 and (not content.strip() or indent > block_scalar):
                i, line = end + 1, line + 1
                continue
            block_scalar = -1
            stripped = content.lstrip(" ")
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
        char = text[i]
        column += 1
        if char == "\n":
            line, column = line + 1, 0
        elif quote:
            if char == "\\" and quote == '"':
                i += 1
            elif char == quote:
                if quote == "'" and text.startswith("''", i):
                    i += 1
                else:
                    quote = ""
        elif char in "\"'" and (i == 0 or text[i - 1] in " \t\n[{,:-?"):
            quote = char
        elif char == "#" and (i == 0 or text[i - 1] in " \t\n"):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif char in "[{":
            depth += 1
            if depth > limit:
                raise too_deep(f"line {line}, column {column}")
        elif char in "]}":
            depth = max(0, depth - 1)
        i += 1


_COMPACT = re.compile(r"(?:[-?:](?: +|$))*")  # "- - ? " : the indicators a line starts with
_BLOCK_SCALAR = re.compile(r"(?:^|[\s:])[|>][0-9+-]*\s*$")


def _without_comment(content: str) -> str:
    cut = content.find(" #")
    return content if cut < 0 else content[:cut]
