"""Form values a person submits, checked against the step's JSON Schema.

Errors come back per field (``a.b``, ``items.0.name``; "" is the form as a whole) so a
Work Guide can show each one next to its input.  Without a schema, any JSON object is
accepted; either way the values must be what a message may carry (the limits of
:func:`contracts.registry.check_values`: nesting, 64-bit integers, valid Unicode) and fit
in :data:`MAX_VALUES_BYTES` serialized, because they travel to the run as a message that
the coordinator parses with those limits.  A ``date-time`` must carry its zone (RFC 3339):
the run compares it with other times, and a zone-less one has no single meaning.

An approval's form is checked as written when it is approved.  A rejection is often a
"no" with nothing more to say, so the form's ``required`` does not apply to it: only the
properties it lists under :data:`REQUIRED_ON_REJECT` (none by default) are required, and
whatever is given is still checked against its property's schema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, ValidationError
from jsonschema.exceptions import SchemaError

from contracts.registry import ContractError, check_values
from services.assignment.core.rejection import FieldError, Rejection

MAX_VALUES_BYTES = 64 * 1024
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
FORMATS = FormatChecker()  # every format jsonschema checks, and date-time (below)


@FORMATS.checks("date-time")
def is_date_time(value: object) -> bool:
    """An RFC 3339 date-time, zone included (jsonschema leaves the format unchecked)."""
    if not isinstance(value, str):
        return True
    if RFC3339.fullmatch(value) is None:
        return False
    try:
        datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


REQUIRED_ON_REJECT = "required_on_reject"  # as the definition checks know it (shared.definitions)


def approval_schema(
    form: Mapping[str, Any] | None, decision: str
) -> Mapping[str, Any] | None:
    """The schema an approval's values are checked against for ``decision``."""
    if form is None or decision == "approved":
        return form
    return {**form, "required": list(form.get(REQUIRED_ON_REJECT) or [])}


def validate_values(schema: Mapping[str, Any] | None, values: Any) -> dict[str, Any] | Rejection:
    """The values as outputs for the step, or a Rejection listing every field error."""
    if not isinstance(values, dict):
        return _invalid("the form values must be a JSON object", "", "expected an object")
    unfit = _unfit(values)
    if unfit:
        return Rejection("the form values cannot be sent to the run", "invalid", unfit)
    try:
        size = len(json.dumps(values, allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        return _invalid("the form values are not JSON", "", str(exc))
    if size > MAX_VALUES_BYTES:
        message = f"{size} bytes; the limit is {MAX_VALUES_BYTES}"
        return _invalid("the form values are too large", "", message)
    if schema is None:
        return values
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return Rejection(f"the step's form schema is invalid: {exc.message}", "invalid")
    validator = Draft202012Validator(schema, format_checker=FORMATS)
    errors = sorted(
        {e for error in validator.iter_errors(values) for e in _field_errors(error)},
        key=lambda e: (e.field, e.message),
    )
    if errors:
        count = f"{len(errors)} field error{'s' if len(errors) > 1 else ''}"
        return Rejection(f"the form has {count}", "invalid", tuple(errors))
    return values


def _unfit(values: Mapping[str, Any]) -> tuple[FieldError, ...]:
    """Per field, what a message could not carry (checked before anything recurses)."""
    errors = []
    for name, value in values.items():
        try:
            check_values({name: value})
        except ContractError as exc:
            errors.append(FieldError(name if isinstance(name, str) else "", str(exc)))
    return tuple(errors)


def _field_errors(error: ValidationError) -> Iterable[FieldError]:
    """Name the field a person must fix: a missing one by its own name, not its parent's."""
    path = [str(part) for part in error.absolute_path]
    required, instance = error.validator_value, error.instance
    if error.validator == "required" and isinstance(required, list) and isinstance(instance, dict):
        missing = [name for name in required if name not in instance]
        yield from (FieldError(".".join([*path, name]), "is required") for name in missing)
        return
    yield FieldError(".".join(path), error.message)


def _invalid(reason: str, field: str, message: str) -> Rejection:
    return Rejection(reason, "invalid", (FieldError(field, message),))
