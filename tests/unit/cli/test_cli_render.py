"""Tables, times and the readable views: run timelines, work items, definitions, directory."""

from __future__ import annotations

from typing import Any

import pytest

from cli.definitions import describe_definition, prune_defaults
from cli.directory import describe_directory
from cli.output import fmt_duration, fmt_time, fmt_value, render_fields, render_table
from cli.runs import describe_event, describe_run, timeline_rows
from cli.work import describe_item, form_rows, history_change, work_rows

AT = "2025-03-14T09:30:05.123000Z"


def test_tables_pad_columns_and_cut_long_cells() -> None:
    table = render_table(["id", "status", "note"], [
        ["r-1", "completed", None],
        ["run-22", "error", "x" * 80],
    ], max_cell=20)
    assert table.splitlines() == [
        "ID      STATUS     NOTE",
        "r-1     completed  -",
        "run-22  error      " + "x" * 19 + "…",
    ]


def test_cells_show_lists_booleans_and_objects_compactly() -> None:
    assert fmt_value(["a", "b"]) == "a, b"
    assert fmt_value([]) == "-"
    assert fmt_value(True) == "yes" and fmt_value(False) == "no"
    assert fmt_value({"a": 1}) == '{"a":1}'
    assert fmt_value("two\nlines") == "two lines"
    assert fmt_value(3) == "3"


@pytest.mark.parametrize(("value", "shown"), [
    (AT, "2025-03-14 09:30:05"),
    ("2025-03-14T10:30:05+01:00", "2025-03-14 09:30:05"),
    ("2025-03-14T09:30:05", "2025-03-14 09:30:05"),
    (None, "-"),
    ("", "-"),
    ("soon", "soon"),
])
def test_times_are_shown_in_utc_to_the_second(value: Any, shown: str) -> None:
    assert fmt_time(value) == shown


@pytest.mark.parametrize(("value", "shown"), [
    ("172800s", "2d"), ("86400s", "1d"), ("5400s", "1h30m"), ("30s", "30s"), ("1.5s", "1.5s"),
    ("0s", "0s"), ("P1D", "P1D"), (None, "None"),
])
def test_durations_read_like_the_definition_language(value: Any, shown: str) -> None:
    assert fmt_duration(value) == shown


def test_fields_are_aligned() -> None:
    assert render_fields([("run", "r-1"), ("current stage", None)]).splitlines() == [
        "run:            r-1", "current stage:  -"]


HISTORY: list[dict[str, Any]] = [
    {"kind": "RunCreated", "at": AT, "actor": "admin", "run_id": "r-1", "orchestration": "hello",
     "version": 2, "inputs": {"n": 1}, "record": {}, "record_key": "Case:7", "stages": ["s"],
     "steps": [["s", "a", "background"]]},
    {"kind": "StageEntered", "at": AT, "actor": "admin", "stage": "s"},
    {"kind": "StepStarted", "at": AT, "actor": "admin", "step": "a", "attempt": 1},
    {"kind": "StepRetryScheduled", "at": AT, "actor": "system", "step": "a", "error": "HTTP 503",
     "timer": {"id": "retry:a:1", "due_at": "2025-03-14T09:31:00Z", "purpose": "retry",
               "step": "a", "epoch": 0}},
    {"kind": "TimerScheduled", "at": AT, "actor": "system",
     "timer": {"id": "wait:w:1", "due_at": "2025-03-14T10:30:05Z", "purpose": "wait", "step": "w"}},
    {"kind": "TimerCleared", "at": AT, "actor": "system", "timer_id": "wait:w:1"},
    {"kind": "StepFailed", "at": AT, "actor": "system", "step": "a", "error": "HTTP 500"},
    {"kind": "StepSucceeded", "at": AT, "actor": "hana", "step": "ok", "outputs": {"x": 1},
     "decision": "approved", "comment": "fine", "merge_into_vars": False},
    {"kind": "StepSkipped", "at": AT, "actor": "admin", "step": "b", "reason": "operator",
     "outputs": {"y": 2}},
    {"kind": "StepCanceled", "at": AT, "actor": "system", "step": "c",
     "reason": "the run was canceled"},
    {"kind": "StepReset", "at": AT, "actor": "admin", "step": "a"},
    {"kind": "StageSkipped", "at": AT, "actor": "system", "stage": "vp"},
    {"kind": "StageFinished", "at": AT, "actor": "system", "stage": "s", "status": "faulted"},
    {"kind": "RunMigrated", "at": AT, "actor": "admin", "from_version": 1, "to_version": 2,
     "added_steps": [["s", "new_step", "background"]], "removed_steps": ["old_step"]},
    {"kind": "RunStatusChanged", "at": AT, "actor": "admin", "status": "canceled",
     "reason": "no longer needed"},
    {"kind": "SomethingNew", "at": AT, "actor": "system", "detail": "z"},
]

EXPECTED = [
    'run of hello v2 created for Case:7 with inputs {"n":1}',
    "stage s entered",
    "step a started (attempt 1)",
    "step a failed: HTTP 503; retry at 2025-03-14 09:31:00",
    "wait timer for step w due 2025-03-14 10:30:05",
    "timer wait:w:1 cleared",
    "step a failed: HTTP 500",
    "step ok completed: decision approved, comment 'fine', outputs {\"x\":1}",
    'step b skipped: operator, outputs {"y":2}',
    "step c canceled: the run was canceled",
    "step a reset to pending",
    "stage vp skipped (its entry condition is false)",
    "stage s faulted",
    "migrated from v1 to v2, added steps new_step, removed steps old_step",
    "run canceled: no longer needed",
    '{"detail":"z"}',
]


def test_each_history_entry_says_what_changed() -> None:
    assert [describe_event(entry) for entry in HISTORY] == EXPECTED


def test_timeline_rows_have_time_actor_event_and_change() -> None:
    rows = timeline_rows(list(HISTORY[:2]))
    assert rows == [
        ["2025-03-14 09:30:05", "admin", "RunCreated", EXPECTED[0]],
        ["2025-03-14 09:30:05", "admin", "StageEntered", "stage s entered"],
    ]


def run_document() -> dict[str, Any]:
    return {
        "id": "r-1", "orchestration": "cli-wait", "version": 1, "status": "running",
        "stage": "waiting", "started_by": "admin", "created_at": AT, "updated_at": AT,
        "vars": {"n": 1},
        "stages": {"waiting": {"name": "waiting", "status": "in_progress", "visits": 1,
                               "started_at": AT, "finished_at": None}},
        "steps": {"pause": {"name": "pause", "stage": "waiting", "kind": "background",
                            "status": "in_progress", "attempt": 1, "outputs": {}},
                  "after": {"name": "after", "stage": "waiting", "kind": "approval",
                            "status": "completed", "attempt": 1, "decision": "approved",
                            "completed_by": "hana", "finished_at": AT}},
        "timers": [{"id": "wait:pause:1", "due_at": "2025-03-14T10:30:05Z", "purpose": "wait",
                    "step": "pause"}],
        "history": HISTORY[:3],
    }


def test_a_run_shows_its_state_now_and_its_timeline() -> None:
    text = describe_run(run_document())
    lines = text.splitlines()
    assert "status:         running" in lines
    assert "current stage:  waiting" in lines
    assert 'variables:      {"n":1}' in lines
    sections = [line for line in lines if line in ("stages", "steps", "timers", "history")]
    assert sections == ["stages", "steps", "timers", "history"]
    assert any(line.split() == ["waiting", "in_progress", "1", "2025-03-14", "09:30:05", "-"]
               for line in lines)
    assert any(line.split()[:6] == ["waiting", "after", "approval", "completed", "1", "hana"]
               and line.endswith("decision approved") for line in lines)
    assert any(line.split() == ["wait", "pause", "2025-03-14", "10:30:05"] for line in lines)
    assert lines[-1].endswith("step a started (attempt 1)")


def test_a_run_without_history_says_so() -> None:
    run = run_document() | {"history": [], "timers": [], "error": "boom", "finished_at": AT}
    text = describe_run(run)
    assert text.endswith("history\n(no history yet)")
    assert "timers" not in text.splitlines()
    assert "error:          boom" in text.splitlines()


ITEM: dict[str, Any] = {
    "id": "r-1:check:1", "run_id": "r-1", "orchestration": "cli-task", "stage": "review",
    "step": "check", "title": "Check the numbers", "kind": "interactive", "status": "claimed",
    "assignee_kind": "queue", "assignee": "hr", "claimed_by": "hana", "delegated_to": None,
    "due_at": "2025-03-13T09:00:00Z", "overdue": True, "created_at": AT, "updated_at": AT,
    "form": {"type": "object", "required": ["amount"], "properties": {
        "amount": {"type": "integer", "minimum": 1},
        "size": {"type": "string", "enum": ["s", "m"]},
        "start": {"type": ["string", "null"], "format": "date"},
        "note": {"type": "string", "description": "anything else"}}},
    "record": {"case_number": "C-7"}, "context": {"inputs": {"url": "http://x"}},
    "outputs": {}, "decision": None, "comment": None,
    "history": [
        {"at": AT, "actor": "system", "action": "assign", "field": "assignee_kind", "old": "",
         "new": "queue"},
        {"at": AT, "actor": "hana", "action": "comment", "field": None, "old": None,
         "new": "on it"},
    ],
}


def test_work_item_rows_show_assignee_and_overdue() -> None:
    assert work_rows([ITEM]) == [[
        "r-1:check:1", "Check the numbers", "interactive", "claimed", "queue hr", "hana",
        "2025-03-13 09:00:00 OVERDUE", "cli-task", "check"]]
    delegated = ITEM | {"delegated_to": "irene", "due_at": None, "overdue": False}
    assert work_rows([delegated])[0][4:7] == ["queue hr (delegated to irene)", "hana", "-"]


def test_form_fields_list_type_requirement_and_rules() -> None:
    assert form_rows(ITEM["form"]) == [
        ["amount", "integer", "yes", "minimum 1"],
        ["size", "string", "no", "one of s, m"],
        ["start", "string|null", "no", "format date"],
        ["note", "string", "no", "anything else"],
    ]
    assert form_rows(None) == []


def test_history_changes_read_as_old_to_new() -> None:
    assert history_change(ITEM["history"][0]) == "assignee_kind: - -> queue"
    assert history_change(ITEM["history"][1]) == "on it"


def test_a_work_item_shows_form_record_inputs_and_history() -> None:
    text = describe_item(ITEM)
    lines = text.splitlines()
    assert "due:         2025-03-13 09:00:00 OVERDUE" in lines
    assert "run:         r-1 (cli-task, stage review, step check)" in lines
    for title in ("form", "record", "inputs", "history"):
        assert title in lines
    assert "outputs" not in lines  # empty sections are left out
    assert "case_number:  C-7" in lines
    assert lines[-1].split()[2:] == ["hana", "comment", "on", "it"]


DEFINITION: dict[str, Any] = {
    "name": "quote", "version": 3, "description": "", "published_by": "admin",
    "published_at": AT,
    "definition": {
        "name": "quote", "version": 3, "description": "Quotes", "record_fields": None,
        "trigger": {"record": {"object": "Quote", "on": ["updated"], "when": "new.x"},
                    "at_most_one_active_per_record": False},
        "inputs": {"url": {"type": "string", "required": True, "default": None}},
        "stages": [{
            "name": "desk", "entry": None, "exit": None, "sla": "86400s", "on_fault": None,
            "steps": [
                {"name": "review", "kind": "approval", "title": "Review", "action": None,
                 "assignee": {"user": None, "queue": "deal_desk"}, "due": "14400s",
                 "inputs": {"keep": None}, "form": None, "after": [], "optional": False},
                {"name": "call", "kind": "background", "title": "call", "action": "http",
                 "after": ["review"], "when": "true", "inputs": {}, "optional": True}],
            "decisions": [{"when": "steps.review.decision == 'rejected'", "goto": None,
                           "end": True}]}],
    },
}


def test_a_definition_outline_lists_stages_steps_and_decisions() -> None:
    lines = describe_definition(DEFINITION).splitlines()
    assert lines[:4] == ["name:         quote", "version:      3", "description:  Quotes",
                         "published:    2025-03-14 09:30:05 by admin"]
    assert "trigger:      Quote updated when new.x" in lines
    assert "inputs:       url* (string)" in lines
    assert "1. stage desk  sla: 1d" in lines
    assert "     - review  [approval] for queue deal_desk  'Review'  (due 4h)" in lines
    assert "     - call  [background] action http  (after review; when true; optional)" in lines
    assert "     decision: when steps.review.decision == 'rejected': end the run" in lines


def test_the_yaml_view_drops_unset_fields_but_not_inside_inputs() -> None:
    pruned = prune_defaults(DEFINITION["definition"])
    assert "version" not in pruned and "record_fields" not in pruned
    assert pruned["trigger"] == {"record": {"object": "Quote", "on": ["updated"], "when": "new.x"}}
    review, call = pruned["stages"][0]["steps"]
    assert review == {"name": "review", "kind": "approval", "title": "Review",
                      "assignee": {"user": None, "queue": "deal_desk"}, "due": "14400s",
                      "inputs": {"keep": None}}
    assert call["optional"] is True and call["after"] == ["review"]
    assert pruned["stages"][0]["decisions"] == [
        {"when": "steps.review.decision == 'rejected'", "end": True}]


def test_the_directory_view_lists_people_and_pools() -> None:
    text = describe_directory({
        "users": [{"id": "hugo", "name": "Hugo", "email": "h@x", "manager": "dana",
                   "groups": ["hr_leads"], "queues": ["hr"], "out_of_office": True,
                   "delegate": "hana", "channels": ["chat"]}],
        "groups": [{"id": "hr_leads", "name": "HR leads", "members": ["dana", "hugo"]}],
        "queues": [],
    })
    lines = text.splitlines()
    assert lines[0] == "users (1)"
    assert lines[2].split() == ["hugo", "Hugo", "h@x", "dana", "hr_leads", "hr", "out", "hana",
                                "chat"]
    assert "groups (1)" in lines and "queues (0)" in lines
    assert lines[lines.index("groups (1)") + 2].split() == ["hr_leads", "HR", "leads", "dana,",
                                                            "hugo"]
    assert lines[-1] == "(none)"


def test_who_joined_a_run_is_said_in_words() -> None:
    joined = {"kind": "ParticipantsJoined", "at": AT, "actor": "assignment",
              "participants": ["user:irene", "group:it"]}
    assert describe_event(joined) == "now taking part: user:irene, group:it"
