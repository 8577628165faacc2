"""Secrets in definitions: where ``${secrets.NAME}`` may appear, and credentials left literal.

A secret is named, never written, in a definition: the step-runner fills it in when the
step runs (services/step_runner/secrets.py).  Only the inputs listed in ``SECRET_INPUTS``
may name one, since only there does the step-runner fill them in.  A header that looks like
a credential written out in full (``Authorization: Bearer abc123``) is shown to everyone
who may read definitions and travels with every dispatch: publishing warns about it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from shared.definitions.issues import Issue, step_path
from shared.definitions.model import Definition
from shared.expressions import SECRET_MARK, SECRET_REFERENCE

SECRET_INPUTS: dict[str, tuple[str, ...]] = {"http": ("url", "headers", "body", "json")}
CREDENTIAL_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "x-api-key", "api-key", "apikey",
    "x-auth-token", "x-access-token", "x-csrf-token", "private-token",
})
_CREDENTIAL_WORDS = re.compile(r"token|secret|password|passwd|api[-_]?key|auth", re.I)
_TEMPLATE = re.compile(r"\$\{.+?\}")


def check_secret_references(definition: Definition) -> list[Issue]:
    """A ``${secrets.`` anywhere but a well-formed reference in an input that takes one."""
    issues: list[Issue] = []
    for i, stage in enumerate(definition.stages):
        for j, step in enumerate(stage.steps):
            at = step_path(i, stage, j, step)
            allowed = SECRET_INPUTS.get(step.action or "", ()) if step.action else ()
            places = [(f"{at}.title", step.title or "")]
            places += [(f"{at}.inputs.{k}", v) for k, v in step.inputs.items()]
            for path, value in places:
                field = path.rsplit(".inputs.", 1)[-1] if ".inputs." in path else ""
                for where, text in strings_in(value, path):
                    issues += _references(where, text, field in allowed, allowed)
    return issues


def _references(path: str, text: str, allowed: bool, fields: tuple[str, ...]) -> list[Issue]:
    if SECRET_MARK not in text:
        return []
    malformed = text.count(SECRET_MARK) != len(SECRET_REFERENCE.findall(text))
    if malformed:
        return [Issue(path, "a secret is named as ${secrets.NAME} alone (NAME: letters, digits"
                            " and '_'); it cannot be part of an expression")]
    if not allowed:
        where = (f"this step's {', '.join(fields)}" if fields
                 else "an http step's url, headers, body or json")
        return [Issue(path, f"secrets can be named only in {where}, where the step-runner"
                            " fills them in")]
    return []


def credential_warnings(definition: Definition) -> list[Issue]:
    """Headers (and URLs) that seem to carry a credential written out in the definition."""
    warnings: list[Issue] = []
    for i, stage in enumerate(definition.stages):
        for j, step in enumerate(stage.steps):
            if step.action not in SECRET_INPUTS:
                continue
            at = f"{step_path(i, stage, j, step)}.inputs"
            headers = step.inputs.get("headers")
            if isinstance(headers, dict):
                for name, value in headers.items():
                    if _credential_header(str(name)) and _literal(value):
                        warnings.append(Issue(
                            f"{at}.headers.{name}",
                            f"header '{name}' holds a literal value that looks like a"
                            " credential: anyone who can read definitions sees it; name a"
                            " secret instead (${secrets.NAME})"))
            url = step.inputs.get("url")
            if isinstance(url, str) and _literal(url) and _has_password(url):
                warnings.append(Issue(
                    f"{at}.url", "the url holds a password: anyone who can read definitions"
                                 " sees it; name a secret instead (${secrets.NAME})"))
    return warnings


def _credential_header(name: str) -> bool:
    return name.lower() in CREDENTIAL_HEADERS or bool(_CREDENTIAL_WORDS.search(name))


def _literal(value: Any) -> bool:
    """Text written out in the definition: no template, no secret reference."""
    return isinstance(value, str) and bool(value.strip()) and not _TEMPLATE.search(value)


def _has_password(url: str) -> bool:
    try:
        return urlsplit(url).password is not None
    except ValueError:
        return False


def strings_in(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string in a JSON-like value, with its path (``a.b[0]``)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings_in(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from strings_in(item, f"{path}[{index}]")
