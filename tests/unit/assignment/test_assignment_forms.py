"""Form values against a JSON Schema: field-level errors, size and shape limits."""

from __future__ import annotations

from typing import Any

from assignment_builders import FORM, VALID_VALUES

from services.assignment.core import FieldError, Rejection, validate_values
from services.assignment.core.forms import MAX_VALUES_BYTES


def errors_of(schema: dict[str, Any] | None, values: Any) -> list[dict[str, str]]:
    result = validate_values(schema, values)
    assert isinstance(result, Rejection), result
    assert result.code == "invalid"
    return [error.as_dict() for error in result.errors]


def test_valid_values_come_back_as_the_outputs() -> None:
    assert validate_values(FORM, VALID_VALUES) == VALID_VALUES


def test_every_missing_required_field_is_named_by_its_own_path() -> None:
    assert errors_of(FORM, {"laptop": {}}) == [
        {"field": "laptop.model", "message": "is required"},
        {"field": "start_date", "message": "is required"},
    ]


def test_wrong_values_are_reported_at_their_field() -> None:
    values = {**VALID_VALUES, "laptop": {"model": "abacus"}, "notes": "x" * 21}

    assert errors_of(FORM, values) == [
        {"field": "laptop.model", "message": "'abacus' is not one of ['mac', 'thinkpad']"},
        {"field": "notes", "message": f"'{'x' * 21}' is too long"},
    ]


def test_unexpected_fields_are_reported_on_the_form() -> None:
    errors = errors_of(FORM, {**VALID_VALUES, "shoe_size": 44})

    assert errors == [
        {
            "field": "",
            "message": "Additional properties are not allowed ('shoe_size' was unexpected)",
        }
    ]


def test_array_items_are_addressed_by_index() -> None:
    schema = {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string"}}},
    }

    assert errors_of(schema, {"tags": ["a", 2]}) == [
        {"field": "tags.1", "message": "2 is not of type 'string'"}
    ]


def test_the_rejection_counts_the_errors() -> None:
    result = validate_values(FORM, {})

    assert isinstance(result, Rejection)
    assert result.reason == "the form has 2 field errors"
    assert result.as_dict()["errors"] == [
        {"field": "laptop", "message": "is required"},
        {"field": "start_date", "message": "is required"},
    ]


def test_without_a_schema_any_json_object_is_accepted() -> None:
    assert validate_values(None, {"a": [1, {"b": None}]}) == {"a": [1, {"b": None}]}


def test_values_must_be_a_json_object() -> None:
    assert errors_of(None, [1, 2]) == [{"field": "", "message": "expected an object"}]
    assert errors_of(FORM, "text") == [{"field": "", "message": "expected an object"}]


def test_values_that_are_not_json_are_refused() -> None:
    result = validate_values(None, {"when": object()})

    assert isinstance(result, Rejection) and result.reason == "the form values are not JSON"
    assert isinstance(validate_values(None, {"x": float("nan")}), Rejection)


def test_values_are_bounded_in_size_with_or_without_a_schema() -> None:
    big = {"text": "x" * MAX_VALUES_BYTES}

    for schema in (None, {"type": "object"}):
        result = validate_values(schema, big)
        assert isinstance(result, Rejection)
        assert result.reason == "the form values are too large"
    just_fits = {"text": "x" * (MAX_VALUES_BYTES - len('{"text": ""}'))}
    assert validate_values(None, just_fits) == just_fits


def test_an_invalid_schema_is_a_rejection_not_a_crash() -> None:
    result = validate_values({"type": "nonsense"}, {})

    assert isinstance(result, Rejection)
    assert result.reason.startswith("the step's form schema is invalid")


def test_field_errors_are_values() -> None:
    assert FieldError("a.b", "is required").as_dict() == {"field": "a.b", "message": "is required"}


def nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = {"n": value}
    return value


def test_values_a_message_cannot_carry_are_refused_at_their_field() -> None:
    """Regression: a field nested 70 deep was "Done" and the item completed, then the run
    dead-lettered the outcome (the message limits) and stayed stuck; an integer beyond 64
    bits answered 500 when stored."""
    assert errors_of(None, {"deep": nested(70), "fine": 1}) == [
        {"field": "deep", "message": "nested more than 64 levels"}]
    assert errors_of(None, {"n": 2**64}) == [
        {"field": "n", "message": "integer 18446744073709551616... does not fit in 64 bits"}]
    assert errors_of(None, {"text": "\ud800"})[0]["field"] == "text"


def test_a_date_time_must_carry_its_zone() -> None:
    """Regression: the format was never checked; a zone-less time reached the run."""
    schema = {"type": "object", "properties": {"at": {"type": "string", "format": "date-time"}}}
    assert validate_values(schema, {"at": "2027-01-04T09:00:00Z"}) == {"at": "2027-01-04T09:00:00Z"}
    assert validate_values(schema, {"at": "2027-01-04T09:00:00.5+02:00"}) is not None
    for zone_less in ("2027-01-04T09:00:00", "2027-01-04 09:00", "2027-01-04", "tomorrow"):
        assert errors_of(schema, {"at": zone_less}) == [
            {"field": "at", "message": f"'{zone_less}' is not a 'date-time'"}]
