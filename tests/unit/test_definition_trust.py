"""Publish-time trust checks: typed inputs, starters, secrets, timeouts, budgets, YAML depth."""

from __future__ import annotations

import tomllib
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.definitions import loading, references
from shared.definitions.inputs import input_problems, may_start
from shared.definitions.limits import MAX_EXPRESSIONS
from shared.definitions.loading import MAX_DEPTH, load_definition
from shared.definitions.model import Definition, InputSpec, Starters
from shared.definitions.validate import DefinitionError, definition_warnings, validate_definition

ACTIONS = frozenset({"http", "set_variables", "noop", "publish_record_update", "wait"})
ROOT = Path(__file__).resolve().parents[2]


def definition(**extra: Any) -> dict[str, Any]:
    steps = extra.pop("steps", [{"name": "call", "action": "noop"}])
    return {"name": "trust", "stages": [{"name": "only", "steps": steps}], **extra}


def issues(data: dict[str, Any], **options: Any) -> dict[str, str]:
    with pytest.raises(DefinitionError) as error:
        validate_definition(data, known_actions=ACTIONS, **options)
    return {issue.path: issue.message for issue in error.value.issues}


def http(**inputs: Any) -> list[dict[str, Any]]:
    return [{"name": "call", "action": "http", "inputs": {"url": "https://x.example", **inputs}}]


# --- typed inputs and starters ---------------------------------------------------------------

def test_typed_inputs_are_checked_at_publish_with_their_location() -> None:
    found = issues(definition(inputs={
        "url": {"type": "string", "pattern": "^https://(a+)+$"},
        "code": {"type": "string", "pattern": "[unclosed"},
        "size": {"type": "integer", "enum": [1, "two"], "pattern": "x"},
        "tier": {"type": "string", "enum": ["gold"], "default": "silver"},
        "flag": {"type": "boolean", "default": 1},
    }))
    assert "nested repetition" in found["inputs.url.pattern"]
    assert "not a valid regular expression" in found["inputs.code.pattern"]
    assert found["inputs.size.enum[1]"] == "must be an integer, not text"
    assert found["inputs.size.pattern"] == "a pattern applies to string inputs"
    assert found["inputs.tier.default"] == "must be one of 'gold'"
    assert found["inputs.flag.default"] == "must be a boolean, not a number"


def test_typed_inputs_are_enforced_when_a_run_starts() -> None:
    specs = Definition.model_validate(definition(inputs={
        "url": {"type": "string", "required": True, "pattern": r"^https://payroll\.example/"},
        "count": {"type": "integer"}, "tier": {"type": "string", "enum": ["gold", "silver"]},
        "note": {"type": "string", "max_length": 5},
    })).inputs
    assert input_problems(specs, {"url": "https://payroll.example/a", "count": 3}) == []
    assert dict(input_problems(specs, {
        "url": "http://169.254.169.254/", "count": True, "tier": "bronze", "note": "too long",
        "extra": 1,
    })) == {
        "extra": "is not an input of this orchestration (inputs: count, note, tier, url)",
        "url": r"does not match the pattern '^https://payroll\\.example/'",
        "count": "must be an integer, not true/false",
        "tier": "must be one of 'gold', 'silver'",
        "note": "is 8 characters; the most is 5",
    }
    assert input_problems(specs, {}) == [("url", "is required")]


def test_a_definition_without_typed_inputs_takes_any_inputs() -> None:
    assert input_problems({}, {"anything": {"goes": [1]}}) == []
    assert InputSpec().type == "string"


def test_starters_name_users_groups_and_roles() -> None:
    starters = Starters(users=["ada"], groups=["hr"], roles=["hr_partner"])
    assert may_start(None, "anyone", (), ())
    assert may_start(starters, "ada", (), ())
    assert may_start(starters, "ben", (), ("it", "hr"))
    assert may_start(starters, "cy", ("hr_partner",), ())
    assert may_start(starters, "root", ("admin",), ())
    assert not may_start(starters, "eve", ("designer",), ("it",))
    assert not may_start(Starters(), "eve", (), ())


# --- secrets ---------------------------------------------------------------------------------

def test_secrets_are_named_only_where_the_step_runner_fills_them_in() -> None:
    data = definition(steps=[
        *http(headers={"Authorization": "Bearer ${secrets.TOKEN}"}, body={"k": "${secrets.K}"}),
        {"name": "other", "action": "noop", "title": "${secrets.TOKEN}",
         "inputs": {"text": "${secrets.TOKEN}"}},
        {"name": "mixed", "action": "http",
         "inputs": {"url": "${secrets.URL + '/x'}", "outputs": {"a": "${secrets.A}"}}},
    ])
    found = issues(data)
    assert set(found) == {
        "stages[0](only).steps[1](other).title", "stages[0](only).steps[1](other).inputs.text",
        "stages[0](only).steps[2](mixed).inputs.url",
        "stages[0](only).steps[2](mixed).inputs.outputs.a",
    }
    assert "only in an http step's url" in found["stages[0](only).steps[1](other).inputs.text"]
    assert "${secrets.NAME} alone" in found["stages[0](only).steps[2](mixed).inputs.url"]


def test_literal_credentials_in_headers_are_warnings_with_their_location() -> None:
    published = validate_definition(definition(steps=http(
        url="https://user:hunter2@api.example/x",
        headers={"Authorization": "Bearer abc123", "X-Api-Key": "k-1", "Accept": "text/plain",
                 "X-Auth-Token": "${secrets.TOKEN}", "X-Session-Token": "${vars.token}"},
    ), inputs={"token": {"type": "string"}}), known_actions=ACTIONS)
    at = "stages[0](only).steps[0](call).inputs"
    assert [w.path for w in definition_warnings(published)] == [
        f"{at}.headers.Authorization", f"{at}.headers.X-Api-Key", f"{at}.url"]


# --- bounds ----------------------------------------------------------------------------------

def test_a_step_timeout_over_the_deployment_bound_is_refused() -> None:
    data = definition(steps=[{"name": "slow", "action": "noop", "timeout": "2d"},
                             {"name": "ok", "action": "noop", "timeout": "1h"}])
    found = issues(data, longest_step=timedelta(hours=1))
    assert list(found) == ["stages[0](only).steps[0](slow).timeout"]
    assert "172800s is longer than" in found["stages[0](only).steps[0](slow).timeout"]


def test_expressions_are_compiled_within_a_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled = 0
    real = references.compile_expression

    def counting(source: str) -> Any:
        nonlocal compiled
        compiled += 1
        return real(source)

    monkeypatch.setattr(references, "compile_expression", counting)
    text = "".join(f"${{{i} + 1}}" for i in range(MAX_EXPRESSIONS * 3))
    found = issues(definition(steps=[{"name": "s", "action": "noop", "inputs": {"x": text}}]))
    assert compiled == MAX_EXPRESSIONS
    assert any(f"more than {MAX_EXPRESSIONS} expressions" in m for m in found.values())


# --- YAML ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "where"), [
    ("- " * 30_000 + "a", f"line 1, column {2 * MAX_DEPTH - 1}"),
    ("? " * 30_000 + "a", f"line 1, column {2 * MAX_DEPTH - 1}"),
    ("".join("  " * i + f"k{i}:\n" for i in range(200)), f"line {MAX_DEPTH + 1}, column"),
    ("a:\n" + "".join("  " * i + "- - x:\n" for i in range(1, 200)), "line 63, column 127"),
])
def test_block_nesting_is_refused_before_parsing(text: str, where: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def never(text: str) -> Any:
        raise AssertionError("the YAML parser was reached")

    monkeypatch.setattr(loading, "_parse_yaml", never)
    with pytest.raises(DefinitionError) as error:
        load_definition(text, fmt="yaml")
    (issue,) = error.value.issues
    assert issue.path.startswith(where)
    assert f"nests more than {MAX_DEPTH} levels" in issue.message


def test_block_scalars_and_the_examples_are_not_counted_as_nesting() -> None:
    text = "name: x\ndescription: |\n" + "".join(" " * (i + 2) + "text\n" for i in range(200))
    assert load_definition(text, fmt="yaml")["name"] == "x"
    for example in (ROOT / "examples").glob("*.yaml"):
        load_definition(example.read_text(), fmt="yaml")


def test_pyyaml_is_pinned_to_a_version_that_bounds_nesting() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (pin,) = [d for d in project["project"]["dependencies"] if d.lower().startswith("pyyaml")]
    assert pin.replace(" ", "").lower().startswith("pyyaml>=6.0.4,")
    installed = tuple(int(part) for part in version("pyyaml").split(".")[:3])
    assert installed >= (6, 0, 4)
    with pytest.raises(yaml.YAMLError, match="nesting depth"):  # libyaml's own limit
        yaml.load("- " * 30_000 + "a", Loader=yaml.CSafeLoader)


def test_the_dependency_audit_is_a_make_target() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    dev = project["project"]["optional-dependencies"]["dev"]
    assert any(requirement.startswith("pip-audit") for requirement in dev)
    assert "\naudit:" in (ROOT / "Makefile").read_text()
