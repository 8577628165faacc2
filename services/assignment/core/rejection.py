"""Rejections are values: the core never raises for a refused command."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# How the HTTP layer maps them: not_found 404, forbidden 403, conflict 409, invalid 422.
RejectionCode = Literal["not_found", "forbidden", "conflict", "invalid"]


@dataclass(frozen=True)
class FieldError:
    """One problem with one form field; ``field`` is a dotted path, "" for the whole form."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass(frozen=True)
class Rejection:
    """Why a command was refused; ``errors`` lists field-level problems of a form."""

    reason: str
    code: RejectionCode = "conflict"
    errors: tuple[FieldError, ...] = ()

    def as_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"reason": self.reason, "code": self.code}
        if self.errors:
            body["errors"] = [error.as_dict() for error in self.errors]
        return body
