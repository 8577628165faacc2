"""Publish-time validation of orchestration definitions, the examples, and migration checks."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.definitions.model import Definition, StepKind
from shared.definitions.validate import (
    DefinitionError,
    Issue,
    check_migration,
    load_definition,
    validate_definition,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ORCHESTRATIONS = ["hello.yaml", "onboarding.yaml", "quote_approval.yaml", "case_escalation.yaml"]
ACTIONS = frozenset({"http", "set_variables", "noop", "publish_record_update", "wait"})


def base() -> dict[str, Any]:
    """A small valid definition: an HR form, then three parallel steps."""
    return {
        "name": "onboarding",
        "inputs": {"payroll_url": {"type": "string"}},
        "stages": [
            {
                "name": "hr",
                "steps": [
                    {
                        "name": "hr_form",
                        "kind": "interactive",
                        "assignee": {"queue": "hr"},
                        "form": {
                            "type": "object",
                            "properties": {
                                "start_date": {"type": "string"},
                                "desk_needed": {"type": "boolean"},
                            },
                        },
                    }
                ],
            },
            {
                "name": "it",
                "steps": [
                    {"name": "laptop", "kind": "interactive", "assignee": {"group": "it"}},
                    {"name": "desk", "kind": "interactive", "assignee": {"queue": "facilities"}},
                    {"name": "payroll", "action": "http", "inputs": {"url": "${vars.payroll_url}"}},
                ],
            },
        ],
    }


def issues_of(data: dict[str, Any]) -> list[Issue]:
    with pytest.raises(DefinitionError) as caught:
        validate_definition(data, known_actions=ACTIONS)
    return caught.value.issues


def only_issue(data: dict[str, Any]) -> Issue:
    issues = issues_of(data)
    assert len(issues) == 1, issues
    return issues[0]


def with_step(data: dict[str, Any], stage: int, step: int, **fields: Any) -> dict[str, Any]:
    changed = copy.deepcopy(data)
    changed["stages"][stage]["steps"][step].update(fields)
    return changed


def with_stage(data: dict[str, Any], stage: int, **fields: Any) -> dict[str, Any]:
    changed = copy.deepcopy(data)
    changed["stages"][stage].update(fields)
    return changed


# --- the examples ----------------------------------------------------------------------


@pytest.mark.parametrize("filename", ORCHESTRATIONS)
def test_every_example_validates(filename: str) -> None:
    data = load_definition((EXAMPLES / filename).read_text(), fmt="yaml")
    definition = validate_definition(data, known_actions=ACTIONS)
    assert definition.name == data["name"]


def test_onboarding_runs_provisioning_in_parallel_and_loops_back_on_rejection() -> None:
    data = load_definition((EXAMPLES / "onboarding.yaml").read_text(), fmt="yaml")
    definition = validate_definition(data, known_actions=ACTIONS)
    assert [s.name for s in definition.stages] == ["hr", "provisioning", "approval", "welcome"]
    provisioning = definition.stage("provisioning")
    assert {s.name: s.after for s in provisioning.steps} == {
        "laptop": [],
        "desk": [],
        "payroll": [],
    }
    assert definition.step("approval", "manager_approval").kind is StepKind.APPROVAL
    assert definition.stage("approval").decisions[0].goto == "hr"
    assert definition.trigger.record is not None
    assert definition.trigger.record.on == ["created"]


def test_directory_has_every_group_and_queue_the_examples_assign_to() -> None:
    directory = yaml.safe_load((EXAMPLES / "directory.yaml").read_text())
    users = {user["id"]: user for user in directory["users"]}
    for kind in ("groups", "queues"):
        for team in directory[kind]:
            for member in team["members"]:
                assert team["id"] in users[member][kind], (member, team["id"])
    for user in users.values():
        assert user["manager"] is None or user["manager"] in users
        assert user["delegate"] is None or user["delegate"] in users
    teams = {kind: {t["id"] for t in directory[kind + "s"]} for kind in ("group", "queue")}
    for filename in ORCHESTRATIONS:
        data = load_definition((EXAMPLES / filename).read_text(), fmt="yaml")
        definition = validate_definition(data, known_actions=ACTIONS)
        for stage in definition.stages:
            for step in stage.steps:
                if step.assignee and step.assignee.kind in teams:
                    assert step.assignee.value in teams[step.assignee.kind], step.name


def test_the_base_fixture_is_valid() -> None:
    assert validate_definition(base(), known_actions=ACTIONS).stage_index("it") == 1


# --- loading ---------------------------------------------------------------------------


def test_yaml_syntax_error_names_line_and_column() -> None:
    with pytest.raises(DefinitionError) as caught:
        load_definition("name: demo\nstages:\n  - name: a: b\n", fmt="yaml")
    [issue] = caught.value.issues
    assert issue.path == "line 3, column 12"
    assert "YAML syntax error" in issue.message


def test_json_syntax_error_names_line_and_column() -> None:
    with pytest.raises(DefinitionError) as caught:
        load_definition('{"name": "demo",\n "stages": }', fmt="json")
    [issue] = caught.value.issues
    assert issue.path == "line 2, column 12"
    assert issue.message.startswith("JSON syntax error")


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(DefinitionError, match="not a list"):
        load_definition("- name: demo\n", fmt="yaml")


def test_text_over_the_size_limit_is_refused() -> None:
    with pytest.raises(DefinitionError, match="the limit is 262144"):
        load_definition("description: " + "x" * 262144 + "\n", fmt="yaml")


def test_duplicate_yaml_keys_are_errors_not_last_one_wins() -> None:
    with pytest.raises(DefinitionError) as caught:
        load_definition("name: a\nname: b\n", fmt="yaml")
    assert str(caught.value) == (
        "line 2, column 1: YAML syntax error: duplicate key 'name' (first given on line 1)"
    )


def test_yaml_reads_on_as_a_key_and_dates_as_text() -> None:
    data = load_definition("on: [created]\nday: 2024-05-01\nflag: yes\nok: true\n", fmt="yaml")
    assert data == {"on": ["created"], "day": "2024-05-01", "flag": "yes", "ok": True}


def test_yaml_and_json_give_the_same_definition() -> None:
    from_yaml = load_definition((EXAMPLES / "quote_approval.yaml").read_text(), fmt="yaml")
    from_json = load_definition(json.dumps(from_yaml), fmt="json")
    assert validate_definition(from_json, known_actions=ACTIONS) == validate_definition(
        from_yaml, known_actions=ACTIONS
    )


# --- the model's own rules, reported with their paths ----------------------------------


def test_model_errors_carry_their_path_and_the_names() -> None:
    data = with_step(base(), 1, 0, asignee={"group": "it"}, due="2x")
    issues = issues_of(data)
    assert (
        Issue(
            "stages[1](it).steps[0](laptop).asignee",
            "unknown field 'asignee' (did you mean 'assignee'?)",
        )
        in issues
    )
    assert (
        Issue(
            "stages[1](it).steps[0](laptop).due",
            "'2x' is not a duration; write e.g. '30s', '5m', '2h', '3d' or 'PT1H'",
        )
        in issues
    )


def test_assignee_with_two_targets_is_refused() -> None:
    issue = only_issue(with_step(base(), 1, 0, assignee={"group": "it", "user": "ivan"}))
    assert issue.path == "stages[1](it).steps[0](laptop).assignee"
    assert "exactly one of" in issue.message


# --- names, waits and jumps ------------------------------------------------------------


def test_duplicate_stage_names() -> None:
    data = base()
    data["stages"].append({"name": "hr", "steps": [{"name": "other", "action": "noop"}]})
    assert only_issue(data) == Issue(
        "stages[2](hr).name", "duplicate stage name 'hr' (also stages[0])"
    )


def test_duplicate_step_names_across_stages() -> None:
    issue = only_issue(with_step(base(), 1, 1, name="hr_form"))
    assert issue.path == "stages[1](it).steps[1](hr_form).name"
    assert issue.message.startswith(
        "duplicate step name 'hr_form' (also stages[0](hr).steps[0](hr_form))"
    )


def test_after_naming_an_unknown_step() -> None:
    assert only_issue(with_step(base(), 1, 1, after=["lapto"])) == Issue(
        "stages[1](it).steps[1](desk).after[0]",
        "unknown step 'lapto' (steps in stage 'it': desk, laptop, payroll)",
    )


def test_after_naming_a_step_of_another_stage() -> None:
    issue = only_issue(with_step(base(), 1, 1, after=["hr_form"]))
    assert issue.path == "stages[1](it).steps[1](desk).after[0]"
    assert issue.message.startswith("step 'hr_form' is in stage 'hr', not 'it'")


def test_cyclic_waits_report_the_cycle() -> None:
    data = with_step(with_step(base(), 1, 0, after=["desk"]), 1, 1, after=["laptop"])
    assert only_issue(data) == Issue(
        "stages[1](it).steps[1](desk).after[0]",
        "steps wait for each other in a cycle: desk -> laptop -> desk",
    )


def test_longer_cycle_is_reported_once() -> None:
    data = with_step(base(), 1, 0, after=["payroll"])
    data = with_step(data, 1, 1, after=["laptop"])
    data = with_step(data, 1, 2, after=["desk"])
    [issue] = issues_of(data)
    assert issue.message.endswith("desk -> laptop -> payroll -> desk")


def test_a_step_waiting_on_itself() -> None:
    assert only_issue(with_step(base(), 1, 2, after=["payroll"])) == Issue(
        "stages[1](it).steps[2](payroll).after[0]", "step 'payroll' waits for itself"
    )


def test_decision_goto_unknown_stage() -> None:
    data = with_stage(base(), 1, decisions=[{"when": "true", "end": True}, {"goto": "h"}])
    assert only_issue(data) == Issue(
        "stages[1](it).decisions[1].goto", "unknown stage 'h' (known: hr, it)"
    )


def test_fault_path_goto_unknown_stage() -> None:
    assert only_issue(with_stage(base(), 1, on_fault={"goto": "recovery"})) == Issue(
        "stages[1](it).on_fault.goto", "unknown stage 'recovery' (known: hr, it)"
    )


# --- step kinds ------------------------------------------------------------------------


def test_background_step_without_action() -> None:
    data = with_step(base(), 1, 2, action=None, inputs={})
    assert only_issue(data) == Issue(
        "stages[1](it).steps[2](payroll).action",
        "background step 'payroll' needs an action"
        " (http, noop, publish_record_update, set_variables, wait)",
    )


def test_background_step_with_unknown_action() -> None:
    assert only_issue(with_step(base(), 1, 2, action="htp")) == Issue(
        "stages[1](it).steps[2](payroll).action",
        "unknown action 'htp' (known: http, noop, publish_record_update, set_variables, wait)",
    )


@pytest.mark.parametrize("kind", ["interactive", "approval"])
def test_people_steps_need_an_assignee(kind: str) -> None:
    assert only_issue(with_step(base(), 1, 0, kind=kind, assignee=None)) == Issue(
        "stages[1](it).steps[0](laptop).assignee",
        f"{kind} step 'laptop' needs an assignee (user, group, queue, record_field or manager_of)",
    )


@pytest.mark.parametrize(
    ("field", "value"), [("assignee", {"user": "ivan"}), ("form", {"type": "object"})]
)
def test_background_step_cannot_have_assignee_or_form(field: str, value: Any) -> None:
    issue = only_issue(with_step(base(), 1, 2, **{field: value}))
    assert issue.path == f"stages[1](it).steps[2](payroll).{field}"
    assert issue.message.startswith(f"background step 'payroll' cannot have '{field}'")


def test_form_must_be_a_valid_json_schema() -> None:
    form = {"type": "object", "properties": {"serial": {"type": "serial-number"}}}
    issue = only_issue(with_step(base(), 1, 0, form=form))
    assert issue.path == "stages[1](it).steps[0](laptop).form"
    assert issue.message.startswith("form is not a valid JSON Schema at properties.serial.type")


def test_required_on_reject_names_fields_of_an_approval_form() -> None:
    form = {"type": "object", "required_on_reject": ["why", "note"],
            "properties": {"note": {"type": "string"}}}
    approval = with_step(base(), 1, 0, kind="approval", form=form)
    assert only_issue(approval) == Issue(
        "stages[1](it).steps[0](laptop).form.required_on_reject",
        "unknown form field 'why' (properties: note)")
    interactive = with_step(base(), 1, 0, form={**form, "required_on_reject": ["note"]})
    assert only_issue(interactive).message == "only an approval step is rejected"
    valid = with_step(base(), 1, 0, kind="approval", form={**form, "required_on_reject": ["note"]})
    validate_definition(valid, known_actions=ACTIONS)


def test_an_approval_form_cannot_shadow_the_verdict() -> None:
    form = {"type": "object", "properties": {"comment": {"type": "string"}}}
    issue = only_issue(with_step(base(), 1, 0, kind="approval", form=form))
    assert issue.path == "stages[1](it).steps[0](laptop).form.properties.comment"


def test_reminders_need_a_due_date() -> None:
    assert only_issue(with_step(base(), 1, 0, reminders_before_due=["1h"])) == Issue(
        "stages[1](it).steps[0](laptop).reminders_before_due",
        "'reminders_before_due' needs a 'due' on the step",
    )


def test_assignee_from_an_undeclared_record_field() -> None:
    data = with_step(base(), 1, 0, assignee={"manager_of": "record.employe_id"})
    data["record_fields"] = {"employee_id": "string"}
    assert only_issue(data) == Issue(
        "stages[1](it).steps[0](laptop).assignee.manager_of",
        "unknown record field 'employe_id' (record_fields: employee_id)",
    )


# --- expressions -----------------------------------------------------------------------


def test_expression_that_does_not_compile_names_the_column() -> None:
    assert only_issue(with_stage(base(), 1, entry="record.amount >")) == Issue(
        "stages[1](it).entry",
        "'record.amount >' does not compile: syntax error at column 16: mismatched input '<EOF>'",
    )


def test_unknown_top_level_name() -> None:
    issue = only_issue(with_stage(base(), 1, exit="recrod.done == true"))
    assert issue == Issue(
        "stages[1](it).exit",
        "unknown name 'recrod' in 'recrod.done == true'"
        " (expressions here may use record, run, steps, vars)",
    )


def test_trigger_conditions_see_new_and_old_only() -> None:
    data = base()
    data["trigger"] = {"record": {"object": "Employee", "when": "new.x != old.x && record.y"}}
    assert only_issue(data) == Issue(
        "trigger.record.when",
        "unknown name 'record' in 'new.x != old.x && record.y' (expressions here may use new, old)",
    )


def test_trigger_fields_are_checked_against_record_fields() -> None:
    data = base()
    data["record_fields"] = {"status": "string"}
    data["trigger"] = {"record": {"object": "Quote", "when": "new.stauts == 'Submitted'"}}
    assert only_issue(data) == Issue(
        "trigger.record.when",
        "unknown record field 'stauts' in new.stauts (record_fields: status)",
    )


def test_condition_naming_an_unknown_step() -> None:
    data = with_step(base(), 1, 1, when="steps.hr_frm.outputs.desk_needed == true")
    assert only_issue(data) == Issue(
        "stages[1](it).steps[1](desk).when",
        "unknown step 'hr_frm' (known: desk, hr_form, laptop, payroll)",
    )


def test_step_member_must_be_a_step_field() -> None:
    data = with_step(base(), 1, 1, when="steps.hr_form.output.desk_needed")
    assert only_issue(data).message == (
        "steps.hr_form has no field 'output'"
        " (a step has outputs, status, completed_by, decision, comment)"
    )


def test_output_must_be_declared_by_the_form() -> None:
    data = with_step(base(), 1, 1, when="steps.hr_form.outputs.desk == true")
    assert only_issue(data) == Issue(
        "stages[1](it).steps[1](desk).when",
        "step 'hr_form' has no output 'desk' (declared: desk_needed, start_date)",
    )


def test_output_must_be_declared_by_outputs() -> None:
    data = with_step(base(), 1, 2, outputs=["status_code"])
    data["stages"].append(
        {
            "name": "notify",
            "entry": "steps.payroll.outputs.code == 201",
            "steps": [{"name": "tell", "action": "noop"}],
        }
    )
    assert only_issue(data) == Issue(
        "stages[2](notify).entry", "step 'payroll' has no output 'code' (declared: status_code)"
    )


def test_approval_steps_expose_decision_and_comment() -> None:
    data = with_step(base(), 0, 0, kind="approval")
    data = with_stage(
        data,
        0,
        decisions=[{"when": "steps.hr_form.outputs.decision == 'rejected'", "end": True}],
    )
    data = with_step(data, 1, 2, inputs={"note": "${steps.hr_form.outputs.comment}"})
    assert validate_definition(data, known_actions=ACTIONS).stages[0].decisions[0].end


def test_steps_without_declared_outputs_are_not_guessed_at() -> None:
    data = with_step(base(), 1, 1, when="steps.laptop.outputs.anything == 'x'")
    assert validate_definition(data, known_actions=ACTIONS).stages[1].steps[1].when


def test_unknown_variable_in_a_template_names_the_input() -> None:
    data = with_step(base(), 1, 2, inputs={"body": {"to": ["${vars.payroll_ur}"]}})
    assert only_issue(data) == Issue(
        "stages[1](it).steps[2](payroll).inputs.body.to[0]",
        "unknown variable 'payroll_ur' (known: payroll_url); declare it under inputs"
        " or set it with a set_variables step",
    )


def test_set_variables_steps_declare_variables() -> None:
    data = base()
    data["stages"][0]["steps"].append(
        {"name": "remember", "action": "set_variables", "inputs": {"ticket": "T-1"}}
    )
    data = with_step(data, 1, 2, inputs={"url": "${vars.payroll_url}/${vars.ticket}"})
    assert validate_definition(data, known_actions=ACTIONS).step("it", "payroll").inputs


def test_record_fields_checked_only_when_declared() -> None:
    data = with_stage(base(), 1, entry="record.department == 'Sales'")
    assert validate_definition(data, known_actions=ACTIONS).stages[1].entry
    data["record_fields"] = {"dept": "string"}
    assert only_issue(data) == Issue(
        "stages[1](it).entry",
        "unknown record field 'department' in record.department (record_fields: dept)",
    )


def test_strings_methods_and_comprehensions_are_not_paths() -> None:
    data = with_stage(
        base(),
        1,
        entry="record.name.startsWith('steps.nobody') && record.tags.all(t, t.size() > 0)"
        ' && vars.payroll_url.endsWith("vars.nothing")',
    )
    data["record_fields"] = {"name": "string", "tags": "array"}
    assert validate_definition(data, known_actions=ACTIONS).stages[1].entry


@pytest.mark.parametrize(
    ("where", "path"),
    [
        ("entry", "stages[1](it).entry"),
        ("exit", "stages[1](it).exit"),
        ("when", "stages[1](it).steps[0](laptop).when"),
        ("decision", "stages[1](it).decisions[0].when"),
    ],
)
def test_constant_non_bool_condition(where: str, path: str) -> None:
    if where == "when":
        data = with_step(base(), 1, 0, when="1 + 2")
    elif where == "decision":
        data = with_stage(base(), 1, decisions=[{"when": "1 + 2", "end": True}])
    else:
        data = with_stage(base(), 1, **{where: "1 + 2"})
    assert only_issue(data) == Issue(path, "condition '1 + 2' is always 3, not true or false")


def test_templates_in_titles_are_checked() -> None:
    data = with_step(
        base(), 1, 0, title="Laptop for ${record.name} from ${steps.hr_form.outputs.start}"
    )
    assert only_issue(data) == Issue(
        "stages[1](it).steps[0](laptop).title",
        "step 'hr_form' has no output 'start' (declared: desk_needed, start_date)",
    )


def test_constant_template_is_fine_outside_conditions() -> None:
    data = with_step(base(), 1, 2, inputs={"url": "${vars.payroll_url}", "retries": "${1 + 2}"})
    assert validate_definition(data, known_actions=ACTIONS).step("it", "payroll")


def test_every_issue_is_collected_and_printed_one_per_line() -> None:
    data = with_step(base(), 1, 2, action="htp", after=["payroll"])
    data = with_stage(data, 0, entry="recrod.x")
    with pytest.raises(DefinitionError) as caught:
        validate_definition(data, known_actions=ACTIONS)
    error = caught.value
    assert [issue.path for issue in error.issues] == [
        "stages[0](hr).entry",
        "stages[1](it).steps[2](payroll).after[0]",
        "stages[1](it).steps[2](payroll).action",
    ]
    assert str(error).splitlines() == [str(issue) for issue in error.issues]
    assert str(error).splitlines()[1] == (
        "stages[1](it).steps[2](payroll).after[0]: step 'payroll' waits for itself"
    )


# --- migration -------------------------------------------------------------------------


def _definition(data: dict[str, Any], version: int) -> Definition:
    return validate_definition({**data, "version": version}, known_actions=ACTIONS)


def test_migration_is_safe_when_started_steps_survive() -> None:
    current = _definition(base(), 1)
    target_data = with_step(base(), 1, 1, name="desk_v2")  # desk has not started yet
    target = _definition(target_data, 2)
    state = {"stage": "it", "steps": {"laptop": "completed", "desk": "pending"}}
    assert check_migration(current, target, state) == []


def test_migration_refused_when_the_stage_or_started_steps_are_gone() -> None:
    current = _definition(base(), 1)
    target_data = with_stage(base(), 1, name="provisioning")
    assert check_migration(current, _definition(target_data, 2), {"stage": "it"}) == [
        Issue(
            "stages(it)",
            "the run is in stage 'it', which version 2 does not have"
            " (its stages: hr, provisioning)",
        )
    ]
    target = _definition(with_step(base(), 1, 1, name="desk_v2"), 3)
    state = {"stage": "it", "steps": {"laptop": "completed", "desk": "in_progress"}}
    assert check_migration(current, target, state) == [
        Issue(
            "stages[1](it).steps(desk)",
            "step 'desk' is in_progress in the run but stage 'it' of version 3 has no such step",
        )
    ]


def test_migration_refused_when_a_started_step_changes_kind() -> None:
    current = _definition(base(), 1)
    target = _definition(
        with_step(base(), 1, 0, kind="background", action="noop", assignee=None), 2
    )
    state = {"stage": "it", "steps": {"laptop": "in_progress"}}
    assert check_migration(current, target, state) == [
        Issue(
            "stages[1](it).steps(laptop).kind",
            "step 'laptop' is in_progress as an interactive step in version 1, but version 2"
            " makes it a background step",
        )
    ]


# --- the documentation stays true ------------------------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "definitions.md"


def _fenced_after(text: str, marker: str, fence: str) -> str:
    return text.split(marker, 1)[1].split(fence, 1)[1].split("```", 1)[0]


def test_documented_validation_output_is_what_validation_prints() -> None:
    doc = DOCS.read_text()
    source = _fenced_after(doc, "this definition has six mistakes:", "```yaml\n")
    printed = _fenced_after(doc, "Publishing rejects it with:", "```\n")
    with pytest.raises(DefinitionError) as caught:
        validate_definition(load_definition(source, fmt="yaml"), known_actions=ACTIONS)
    assert str(caught.value).splitlines() == printed.splitlines()


def test_documented_full_example_is_the_onboarding_example() -> None:
    shown = _fenced_after(DOCS.read_text(), "## A full example", "```yaml\n")
    example = (EXAMPLES / "onboarding.yaml").read_text()
    assert shown == example[example.index("name:") :]
