"""The Work Guide pages' pure parts: JSON Schema forms, the run timeline, small helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.assignment.core.directory import Directory
from services.assignment.core.rejection import FieldError
from services.assignment.core.workitem import AuditEntry, WorkItem
from services.assignment.web import forms, pages, timeline

HR_FORM: dict[str, Any] = {
    "type": "object",
    "required": ["start_date", "laptop_model", "desk_needed"],
    "properties": {
        "start_date": {"type": "string", "format": "date"},
        "laptop_model": {"type": "string", "enum": ["standard", "developer", "designer"]},
        "desk_needed": {"type": "boolean"},
        "seats": {"type": "integer", "minimum": 1, "description": "How many"},
        "budget": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "level": {"enum": [1, 2, 3]},
    },
}
T0 = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
DIRECTORY = Directory.from_document({
    "users": [{"id": "hana", "name": "Hana Okafor", "queues": ["hr"]},
              {"id": "irene", "name": "Irene Castillo"}],
    "groups": [],
    "queues": [{"id": "hr", "name": "HR", "members": ["hana"]}],
})


def test_a_schema_becomes_labelled_fields_with_the_right_widgets() -> None:
    rendered = forms.render_form(HR_FORM)
    by_name = {f.name: f for f in rendered.fields}
    assert [f.name for f in rendered.fields][:3] == ["start_date", "laptop_model", "desk_needed"]
    assert by_name["start_date"].widget == "date" and by_name["start_date"].label == "Start date"
    assert by_name["laptop_model"].widget == "select"
    assert [c.value for c in by_name["laptop_model"].choices] == ["standard", "developer",
                                                                  "designer"]
    assert by_name["desk_needed"].widget == "yesno" and by_name["desk_needed"].required
    assert by_name["desk_needed"].anchor == "field-2-1"  # a link lands on the first radio
    assert by_name["seats"].attrs == {"step": "1", "inputmode": "numeric", "min": "1"}
    assert not by_name["seats"].required and by_name["seats"].description == "How many"
    assert by_name["tags"].widget == "json"
    assert not rendered.has_errors


def test_field_errors_land_next_to_their_field_and_the_rest_on_the_form() -> None:
    errors = (FieldError("laptop_model", "is required"),
              FieldError("seats", "0 is less than the minimum of 1"),
              FieldError("tags.0", "5 is not of type 'string'"),
              FieldError("", "the form values must be a JSON object"),
              FieldError("surprise", "Additional properties are not allowed"))
    rendered = forms.render_form(HR_FORM, {"f.seats": "0"}, errors)
    by_name = {f.name: f for f in rendered.fields}
    assert by_name["laptop_model"].errors == ["Laptop model is required"]
    assert by_name["seats"].errors == ["0 is less than the minimum of 1"]
    assert by_name["seats"].value == "0"  # what was typed stays in the field
    assert by_name["tags"].errors == ["0: 5 is not of type 'string'"]
    assert rendered.errors == ["the form values must be a JSON object",
                               "surprise: Additional properties are not allowed"]
    assert rendered.has_errors


def test_submitted_text_becomes_the_json_the_schema_describes() -> None:
    values = forms.values_from(HR_FORM, {
        "f.start_date": "2027-01-04", "f.laptop_model": "developer", "f.desk_needed": "false",
        "f.seats": " 3 ", "f.budget": "12.5", "f.tags": '["a", "b"]', "f.level": "2",
        "csrf": "ignored", "comment": "ignored",
    })
    assert values == {"start_date": "2027-01-04", "laptop_model": "developer",
                      "desk_needed": False, "seats": 3, "budget": 12.5, "tags": ["a", "b"],
                      "level": 2}


def test_empty_inputs_are_left_out_and_unreadable_ones_passed_on_as_text() -> None:
    values = forms.values_from(HR_FORM, {
        "f.start_date": "", "f.seats": "three", "f.budget": "", "f.desk_needed": "",
        "f.tags": "[not json", "f.level": "7", "f.unknown": "kept",
    })
    assert values == {"seats": "three", "tags": "[not json", "level": "7", "unknown": "kept"}
    assert forms.values_from(HR_FORM, {"f.budget": "1e3"}) == {"budget": 1000.0}
    assert forms.values_from(HR_FORM, {"f.budget": "7"}) == {"budget": 7}
    assert forms.values_from(None, {"f.note": "hello"}) == {"note": "hello"}


def test_durations_read_like_people_say_them() -> None:
    cases = {None: "—", 0: "0s", 0.4: "<1s", 12: "12s", 250: "4m 10s", 3600: "1h",
             7500: "2h 5m", 86_400 * 3 + 3600 * 4: "3d 4h", 86_400: "1d"}
    for seconds, text in cases.items():
        assert timeline.duration_text(seconds) == text


def history(*events: tuple[int, str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"at": (T0 + timedelta(minutes=m)).isoformat(), "kind": kind, "actor": "system",
             **fields} for m, kind, fields in events]


RUN_HISTORY = history(
    (0, "RunCreated", {"orchestration": "onboarding", "version": 2,
                       "stages": ["hr", "approval"], "actor": "admin"}),
    (0, "StageEntered", {"stage": "hr"}),
    (0, "StepStarted", {"step": "hr_form", "attempt": 1}),
    (30, "StepSucceeded", {"step": "hr_form", "actor": "hana"}),
    (30, "StageFinished", {"stage": "hr", "status": "completed"}),
    (30, "StageEntered", {"stage": "approval"}),
    (30, "StepStarted", {"step": "manager_approval", "attempt": 1}),
    (90, "StepSucceeded", {"step": "manager_approval", "actor": "irene",
                           "decision": "rejected", "comment": "wrong date"}),
    (90, "StageFinished", {"stage": "approval", "status": "completed"}),
    (90, "StageEntered", {"stage": "hr"}),
    (90, "TimerScheduled", {"timer": {}}),
    (90, "StepStarted", {"step": "hr_form", "attempt": 2}),
)


def test_the_path_marks_the_route_back_with_the_decision_that_caused_it() -> None:
    path = timeline.path_of(RUN_HISTORY, DIRECTORY)
    texts = [entry.text for entry in path]
    assert texts == [
        "Run of onboarding v2 started", "Stage hr entered", "Step hr_form started",
        "Step hr_form completed by Hana Okafor", "Stage hr completed", "Stage approval entered",
        "Step manager_approval started",
        "Step manager_approval rejected by Irene Castillo: “wrong date”",
        "Stage approval completed",
        "Back to stage hr after manager_approval was rejected (visit 2)",
        "Step hr_form started (attempt 2)",
    ]
    assert [e.kind for e in path if e.kind in ("back", "decision")] == ["decision", "back"]
    assert path[3].seconds == 30 * 60 and path[7].seconds == 60 * 60


def test_moving_on_after_a_route_back_is_not_another_route_back() -> None:
    stages = ["draft", "review", "approval"]
    events = history(
        (0, "RunCreated", {"orchestration": "quote", "version": 1, "stages": stages}),
        (0, "StageEntered", {"stage": "draft"}),
        (1, "StageEntered", {"stage": "review"}),
        (2, "StageEntered", {"stage": "approval"}),
        (3, "StepSucceeded", {"step": "sign_off", "actor": "irene", "decision": "rejected"}),
        (3, "StageEntered", {"stage": "review"}),
        (4, "StepSucceeded", {"step": "check", "actor": "hana", "decision": "approved"}),
        (5, "StageEntered", {"stage": "approval"}),
        (6, "StageEntered", {"stage": "approval"}),
    )
    entries = [e for e in timeline.path_of(events, DIRECTORY) if e.text.find("tage ") > 0]
    assert [(e.kind, e.text) for e in entries] == [
        ("stage", "Stage draft entered"), ("stage", "Stage review entered"),
        ("stage", "Stage approval entered"),
        ("back", "Back to stage review after sign_off was rejected (visit 2)"),
        ("stage", "Stage approval entered (visit 2)"),
        ("back", "Back to stage approval (visit 3)"),  # a stage that loops on itself
    ]


def work_item(**fields: Any) -> WorkItem:
    base: dict[str, Any] = {
        "id": "r1:hr_form:2", "run_id": "r1", "orchestration": "onboarding", "version": 2,
        "stage": "hr", "step": "hr_form", "attempt": 2, "kind": "interactive",
        "title": "Confirm", "assignee_kind": "queue", "assignee": "hr",
        "created_at": T0 + timedelta(minutes=90), "updated_at": T0 + timedelta(minutes=90),
    }
    return WorkItem.model_validate({**base, **fields})


def test_the_timeline_says_who_holds_the_ball_and_for_how_long() -> None:
    run = {
        "id": "r1", "orchestration": "onboarding", "version": 2, "status": "running",
        "stage": "hr", "created_at": T0.isoformat(), "history": RUN_HISTORY,
        "record": {"fields": {"name": "Ada"}},
        "stages": {"approval": {"status": "completed", "visits": 1,
                                "started_at": (T0 + timedelta(minutes=30)).isoformat(),
                                "finished_at": (T0 + timedelta(minutes=90)).isoformat()},
                   "hr": {"status": "in_progress", "visits": 2,
                          "started_at": (T0 + timedelta(minutes=90)).isoformat()}},
        "steps": {"hr_form": {"stage": "hr", "kind": "interactive", "status": "in_progress",
                              "attempt": 2,
                              "started_at": (T0 + timedelta(minutes=90)).isoformat()},
                  "sync": {"stage": "hr", "kind": "background", "status": "waiting_retry",
                           "attempt": 3, "started_at": (T0 + timedelta(minutes=95)).isoformat()},
                  "manager_approval": {"stage": "approval", "kind": "approval",
                                       "status": "completed", "decision": "rejected"}},
    }
    claimed = T0 + timedelta(minutes=100)
    item = work_item(status="claimed", claimed_by="hana", history=(
        AuditEntry(at=claimed, actor="hana", action="claim", field="claimed_by", new="hana"),))
    now = T0 + timedelta(minutes=120)
    line = timeline.build(run, [item], DIRECTORY, now=now, visible=[item.id])
    assert [s.name for s in line.stages] == ["hr", "approval"]  # the definition's order
    assert line.stages[0].current and line.stages[0].visits == 2
    assert line.record == {"name": "Ada"} and line.seconds == 120 * 60
    human, machine = line.holders
    assert (human.who, human.since, human.seconds) == ("Hana Okafor (claimed)", claimed, 20 * 60)
    assert human.work_item_id == item.id
    assert machine.who == "Baton (automatic step, waiting to retry)" and machine.seconds == 25 * 60
    assert line.routed_back

    pooled = timeline.build(run, [work_item()], DIRECTORY, now=now)
    assert pooled.holders[0].who == "the HR queue" and pooled.holders[0].work_item_id is None
    finished = timeline.build({**run, "status": "completed"}, [], DIRECTORY, now=now)
    assert finished.holders == [] and finished.seconds is None


def test_csrf_tokens_belong_to_one_session_and_next_stays_on_the_site() -> None:
    assert pages.csrf_token("bt_a") == pages.csrf_token("bt_a") != pages.csrf_token("bt_b")
    assert "bt_a" not in pages.csrf_token("bt_a")
    for target in ("https://evil.example/", "//evil.example/ui/", "/ui\\@evil", "/docs"):
        assert pages._safe_next(target) == "/ui/work"
    assert pages._safe_next("/ui/work/abc?x=1") == "/ui/work/abc?x=1"
    assert pages._seconds("90") == 90 and pages._seconds("4h") == 4 * 3600
    assert pages._seconds("soon") is None and pages._seconds("") is None


def test_json_too_deep_to_read_is_passed_on_as_text_not_a_server_error() -> None:
    """Regression: 3,000 nested brackets in a JSON field raised RecursionError (a 500)."""
    schema = {"type": "object", "properties": {"extra": {"type": "object"}}}
    deep = "[" * 3000 + "]" * 3000
    assert forms.values_from(schema, {"f.extra": deep}) == {"extra": deep}
