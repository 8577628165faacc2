"""key=value parsing and the JSON/YAML files the commands read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cli.errors import UsageError
from cli.values import load_mapping, merged, parse_pairs, parse_text, parse_value


@pytest.mark.parametrize(("text", "value"), [
    ("42", 42),
    ("-1.5", -1.5),
    ("true", True),
    ("false", False),
    ("null", None),
    ('{"a": [1, 2]}', {"a": [1, 2]}),
    ("[1, \"x\"]", [1, "x"]),
    ('"123"', "123"),            # quoted JSON forces text
    ("hello", "hello"),          # not JSON: kept as text
    ("True", "True"),            # only JSON's spelling is a boolean
    ("2024-05-01", "2024-05-01"),
    ("", ""),
    ("a=b", "a=b"),
    ("NaN", "NaN"),              # not JSON, even though Python's json would accept it
    ("Infinity", "Infinity"),
    ("{broken", "{broken"),
])
def test_values_are_json_when_they_parse_else_text(text: str, value: Any) -> None:
    assert parse_value(text) == value
    assert type(parse_value(text)) is type(value)


def test_pairs_become_a_mapping_split_at_the_first_equals_sign() -> None:
    pairs = ["amount=12", "approved=true", "note=a=b", "tags=[\"x\"]", " name = Ada"]
    assert parse_pairs(pairs, "--value") == {
        "amount": 12, "approved": True, "note": "a=b", "tags": ["x"], "name": " Ada"}


@pytest.mark.parametrize("bad", ["novalue", "=1", "  =x"])
def test_a_pair_without_key_or_equals_sign_is_a_usage_error(bad: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_pairs(["ok=1", bad], "--input")
    assert caught.value.exit_code == 2
    assert caught.value.message == f"--input {bad!r}: expected key=value"


def test_a_key_given_twice_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="'a' is given more than once"):
        parse_pairs(["a=1", "a=2"], "--value")


def test_yaml_is_read_the_yaml_1_2_way() -> None:
    data = parse_text("on: yes\nno: off\nstart: 2024-05-01\nok: true\nn: 3\n", name="x.yaml")
    assert data == {"on": "yes", "no": "off", "start": "2024-05-01", "ok": True, "n": 3}


def test_syntax_errors_name_the_file_and_the_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"x\.yaml is not valid YAML \(line 2, column"):
        parse_text("a: 1\nb: c: d\n", name="x.yaml")
    with pytest.raises(UsageError, match=r"x\.json is not valid JSON"):
        parse_text("{'a': 1}", name="x.json")


def test_files_must_hold_a_mapping(tmp_path: Path) -> None:
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(UsageError, match="should hold a mapping of names to values, not a list"):
        load_mapping(listing)
    with pytest.raises(UsageError, match="no such file"):
        load_mapping(tmp_path / "missing.json")
    with pytest.raises(UsageError, match="is a directory"):
        load_mapping(tmp_path)


def test_command_line_pairs_override_the_file(tmp_path: Path) -> None:
    values = tmp_path / "values.json"
    values.write_text('{"amount": 1, "note": "from the file"}')
    assert merged(values, ["amount=5", "extra=x"], "--value") == {
        "amount": 5, "note": "from the file", "extra": "x"}
    assert merged(None, ["a=1"], "--value") == {"a": 1}
    assert merged(None, [], "--value") == {}
