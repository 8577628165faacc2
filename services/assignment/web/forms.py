"""A work item's JSON Schema as an HTML form, and the submitted form back as typed values.

The page never decides whether values are valid: it turns what the browser sent into the
JSON the schema describes (a number field into a number, a yes/no into a boolean) and
hands it to the same command the HTTP API uses; the core checks it against the schema and
its field errors are shown next to the fields they name.  Input that cannot be converted
(``abc`` in a number field) is passed on as text, so the schema reports it like any other
mistake.

Widgets: a string is a text input (``date``, ``email`` and ``uri`` formats get the
matching input types; a long ``maxLength`` a textarea), an ``enum`` a select, a number or
integer a number input, a boolean a yes/no radio group, and anything else (objects,
arrays) a textarea holding JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from services.assignment.core.forms import REQUIRED_ON_REJECT
from services.assignment.core.rejection import FieldError

Widget = Literal["text", "date", "email", "url", "number", "select", "yesno", "textarea", "json"]
PREFIX = "f."  # form field names: f.<property>, so they never clash with csrf and friends
LONG_TEXT = 200
FORMATS: Mapping[str, Widget] = {"date": "date", "email": "email", "uri": "url"}


@dataclass(frozen=True)
class Choice:
    value: str
    label: str


@dataclass
class FormField:
    """One input of the rendered form, with what was typed into it and its errors."""

    name: str
    label: str
    widget: Widget
    required: bool
    index: int
    description: str = ""
    choices: tuple[Choice, ...] = ()
    attrs: dict[str, str] = field(default_factory=dict)
    value: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def input_name(self) -> str:
        return PREFIX + self.name

    @property
    def html_id(self) -> str:
        return f"field-{self.index}"

    @property
    def anchor(self) -> str:
        """Where a link to this field should land: the input (a radio group's first choice)."""
        return f"{self.html_id}-1" if self.widget == "yesno" else self.html_id


@dataclass
class RenderedForm:
    fields: list[FormField]
    errors: list[str]  # problems with the form as a whole, or with fields it does not show

    @property
    def has_errors(self) -> bool:
        return bool(self.errors) or any(f.errors for f in self.fields)


def humanize(name: str) -> str:
    """``start_date`` -> ``Start date``."""
    words = name.replace("_", " ").replace("-", " ").strip()
    return words[:1].upper() + words[1:] if words else name


def render_form(
    schema: Mapping[str, Any] | None,
    submitted: Mapping[str, str] | None = None,
    errors: Sequence[FieldError] = (),
    *,
    approval: bool = False,
) -> RenderedForm:
    """The fields of ``schema`` (in its order), filled with ``submitted`` raw values.

    An approval's form is sent with either verdict, so a field required for only one of
    them says which (the label's "(optional)" follows approving).
    """
    submitted = submitted or {}
    properties = _properties(schema)
    required = set(_required(schema))
    fields: list[FormField] = []
    names = list(properties) + [name for name in _required(schema) if name not in properties]
    for index, name in enumerate(names):
        spec = properties.get(name, {})
        fields.append(_field(name, spec if isinstance(spec, Mapping) else {},
                             name in required, index, submitted.get(PREFIX + name, "")))
    if approval:
        _note_verdicts(fields, required, set(_required(schema, REQUIRED_ON_REJECT)))
    by_name = {f.name: f for f in fields}
    general: list[str] = []
    for error in errors:
        top = error.field.split(".", 1)[0] if error.field else ""
        target = by_name.get(top)
        if target is None:
            general.append(f"{error.field}: {error.message}" if error.field else error.message)
        elif error.field == top:
            target.errors.append(_sentence(target.label, error.message))
        else:
            target.errors.append(f"{error.field.split('.', 1)[1]}: {error.message}")
    return RenderedForm(fields, general)


def values_from(schema: Mapping[str, Any] | None, form: Mapping[str, str]) -> dict[str, Any]:
    """The form's values as the JSON object the schema describes.

    An empty input is left out (so a required one is reported as required, and an optional
    one is simply not given).
    """
    properties = _properties(schema)
    values: dict[str, Any] = {}
    for key, raw in form.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX):]
        spec = properties.get(name, {})
        converted = _convert(spec if isinstance(spec, Mapping) else {}, raw)
        if converted is not _MISSING:
            values[name] = converted
    return values


def raw_value(value: Any) -> str:
    """A stored value as it would be typed into its field (for showing outputs)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


class _Missing:
    pass


_MISSING = _Missing()


def _properties(schema: Mapping[str, Any] | None) -> Mapping[str, Any]:
    props = (schema or {}).get("properties")
    return props if isinstance(props, Mapping) else {}


def _required(schema: Mapping[str, Any] | None, keyword: str = "required") -> list[str]:
    required = (schema or {}).get(keyword)
    return [r for r in required if isinstance(r, str)] if isinstance(required, list) else []


def _note_verdicts(fields: Sequence[FormField], to_approve: set[str],
                   to_reject: set[str]) -> None:
    for f in fields:
        note = ""
        if f.name in to_approve and f.name not in to_reject:
            note = "Needed to approve."
        elif f.name in to_reject and f.name not in to_approve:
            note = "Needed to reject."
        if note:
            f.description = f"{f.description} {note}".strip()


def _type(spec: Mapping[str, Any]) -> str:
    kind = spec.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    return kind if isinstance(kind, str) else ""


def _field(name: str, spec: Mapping[str, Any], required: bool, index: int,
           value: str) -> FormField:
    label = str(spec.get("title") or humanize(name))
    description = str(spec.get("description") or "")
    kind = _type(spec)
    attrs: dict[str, str] = {}
    choices: tuple[Choice, ...] = ()
    widget: Widget
    enum = spec.get("enum")
    if isinstance(enum, list) and enum:
        widget = "select"
        choices = tuple(Choice(raw_value(v), raw_value(v)) for v in enum)
    elif kind == "boolean":
        widget = "yesno"
        choices = (Choice("true", "Yes"), Choice("false", "No"))
    elif kind in ("integer", "number"):
        widget = "number"
        attrs["step"] = "1" if kind == "integer" else "any"
        attrs["inputmode"] = "numeric" if kind == "integer" else "decimal"
        for key, attr in (("minimum", "min"), ("maximum", "max")):
            if isinstance(spec.get(key), int | float) and not isinstance(spec.get(key), bool):
                attrs[attr] = str(spec[key])
    elif kind in ("string", ""):
        fmt = spec.get("format")
        widget = FORMATS.get(fmt, "text") if isinstance(fmt, str) else "text"
        longest = spec.get("maxLength")
        if widget == "text" and isinstance(longest, int) and longest > LONG_TEXT:
            widget = "textarea"
        for key, attr in (("minLength", "minlength"), ("maxLength", "maxlength")):
            if isinstance(spec.get(key), int):
                attrs[attr] = str(spec[key])
        if fmt == "date-time" and not description:
            description = "A date and time with its zone, like 2027-01-04T09:00:00Z"
    else:
        widget = "json"
        if not description:
            description = f"JSON ({kind or 'any value'})"
    return FormField(name=name, label=label, widget=widget, required=required, index=index,
                     description=description, choices=choices, attrs=attrs, value=value)


def _convert(spec: Mapping[str, Any], raw: str) -> Any:
    enum = spec.get("enum")
    if isinstance(enum, list) and enum:
        if raw == "":
            return _MISSING
        return next((v for v in enum if raw_value(v) == raw), raw)
    kind = _type(spec)
    text = raw.strip()
    if kind in ("string", ""):
        return raw if raw != "" else _MISSING
    if text == "":
        return _MISSING
    if kind == "boolean":
        return {"true": True, "false": False}.get(text, raw)
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            return raw
    if kind == "number":
        try:
            number = float(text)
        except ValueError:
            return raw
        whole = number.is_integer() and not any(c in text.lower() for c in ".e")
        return int(number) if whole else number
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # too deep to read: the schema reports the text
        return raw


def _sentence(label: str, message: str) -> str:
    """``is required`` -> ``Start date is required``; other messages as the schema says."""
    return f"{label} {message}" if message == "is required" else message
