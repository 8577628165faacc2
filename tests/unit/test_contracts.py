"""Wire contracts: golden samples, upcasting, round-trips, generated schemas, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from contracts import ContractError, Envelope, encode, generate, parse
from contracts.events.commands import StartRun
from contracts.events.runs import RunCompleted, RunStarted, StageCompleted
from contracts.events.steps import StepRequested
from contracts.events.workitems import WorkItemRequested
from contracts.registry import (
    LATEST,
    MAX_MESSAGE_BYTES,
    REGISTRY,
    check_values,
    refusal_of_dumped,
)

ENTRIES = sorted(REGISTRY)
IDS = [generate.name_of(*key) for key in ENTRIES]


def sample_path(type_: str, version: int) -> Path:
    return generate.SAMPLES_DIR / f"{generate.name_of(type_, version)}.json"


def load_sample(type_: str, version: int) -> dict[str, Any]:
    return json.loads(sample_path(type_, version).read_text(encoding="utf-8"))


def raw(data: Any) -> bytes:
    return json.dumps(data).encode()


# --- golden samples --------------------------------------------------------------------


def test_every_registered_version_has_a_golden_sample() -> None:
    missing = [generate.name_of(*key) for key in ENTRIES if not sample_path(*key).exists()]
    assert not missing, (
        f"no golden sample for {missing}; run `python -m contracts.generate --samples`"
    )


def test_no_orphan_samples() -> None:
    expected = {sample_path(*key) for key in ENTRIES}
    orphans = [p.name for p in generate.SAMPLES_DIR.glob("*.json") if p not in expected]
    assert not orphans, f"samples for unregistered contracts: {orphans}"


@pytest.mark.parametrize("key", ENTRIES, ids=IDS)
def test_sample_parses_into_newest_version(key: tuple[str, int]) -> None:
    type_, version = key
    data = load_sample(type_, version)
    assert (data["type"], data["schema_version"]) == key
    envelope = parse(sample_path(type_, version).read_bytes())
    assert envelope.type == type_
    assert envelope.schema_version == LATEST[type_]
    assert type(envelope.payload) is REGISTRY[(type_, LATEST[type_])]
    assert envelope.event_id == data["event_id"]


@pytest.mark.parametrize("key", ENTRIES, ids=IDS)
def test_encode_parse_round_trips(key: tuple[str, int]) -> None:
    envelope = parse(sample_path(*key).read_bytes())
    again = parse(encode(envelope))
    assert again == envelope
    assert isinstance(again, Envelope)


def test_start_run_v1_upcasts_to_v2() -> None:
    data = load_sample("StartRun", 1)
    envelope = parse(raw(data))
    assert envelope.schema_version == 2
    payload = envelope.payload
    assert isinstance(payload, StartRun)
    assert payload.orchestration == data["payload"]["orchestration_name"]
    assert payload.inputs == data["payload"]["variables"]
    assert payload.version is None and payload.record is None


def test_step_requested_v1_upcasts_with_its_attempt_key_as_the_operation_key() -> None:
    data = load_sample("StepRequested", 1)
    envelope = parse(raw(data))
    assert envelope.schema_version == 3
    payload = envelope.payload
    assert isinstance(payload, StepRequested)
    assert payload.operation_key == payload.idempotency_key == data["payload"]["idempotency_key"]
    assert payload.record_key is None


def test_step_requested_v2_upcasts_without_a_record() -> None:
    data = load_sample("StepRequested", 2)
    envelope = parse(raw(data))
    assert envelope.schema_version == 3
    payload = envelope.payload
    assert isinstance(payload, StepRequested)
    assert payload.operation_key == data["payload"]["operation_key"]
    assert payload.record_key is None


def test_work_item_requested_v1_upcasts_without_a_starter() -> None:
    envelope = parse(raw(load_sample("WorkItemRequested", 1)))
    assert envelope.schema_version == 2
    assert isinstance(envelope.payload, WorkItemRequested)
    assert envelope.payload.started_by is None


def test_lifecycle_v1_upcasts_naming_no_stage_a_separate_message_named() -> None:
    """Decision 17: v2 names the stage a move entered or ended; v1 said it in a StageStarted
    or StageCompleted of its own, so an upcast v1 message names none."""
    started = parse(raw(load_sample("RunStarted", 1)))
    assert isinstance(started.payload, RunStarted) and started.schema_version == 2
    assert started.payload.stage is None
    assert started.payload.inputs == load_sample("RunStarted", 1)["payload"]["inputs"]
    completed = parse(raw(load_sample("StageCompleted", 1)))
    assert isinstance(completed.payload, StageCompleted)
    assert (completed.payload.stage, completed.payload.next_stage) == ("hr_intake", None)
    ended = parse(raw(load_sample("RunCompleted", 1)))
    assert isinstance(ended.payload, RunCompleted)
    assert (ended.payload.stage, ended.payload.duration_seconds) == (None, 259200.0)


# --- generated schemas -----------------------------------------------------------------


def test_checked_in_schemas_are_up_to_date() -> None:
    stale = []
    for path, text in generate.generated_files().items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(path.name)
    extra = [
        p.name for p in generate.SCHEMAS_DIR.glob("*.json") if p not in generate.generated_files()
    ]
    assert not stale and not extra, (
        f"generated contract files are stale: {stale + extra}; run `make schemas`"
    )


def test_check_mode_reports_stale_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generate, "SCHEMAS_DIR", tmp_path / "schemas")
    monkeypatch.setattr(generate, "ASYNCAPI_PATH", tmp_path / "asyncapi.json")
    assert generate.main(["--check"]) == 1
    assert generate.main([]) == 0
    assert generate.main(["--check"]) == 0
    (tmp_path / "asyncapi.json").write_text("{}\n")
    assert generate.stale_files() == [tmp_path / "asyncapi.json"]
    assert generate.main(["--check"]) == 1


def test_generated_output_is_deterministic() -> None:
    assert generate.generated_files() == generate.generated_files()
    for text in generate.generated_files().values():
        assert text.endswith("\n")
        assert (
            text
            == json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
        )


@pytest.mark.parametrize("key", ENTRIES, ids=IDS)
def test_sample_validates_against_its_json_schema(key: tuple[str, int]) -> None:
    schema_file = generate.SCHEMAS_DIR / f"{generate.name_of(*key)}.json"
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(load_sample(*key))


def test_json_schema_pins_type_and_version() -> None:
    schema = generate.envelope_schema("StartRun", 1)
    validator = jsonschema.Draft202012Validator(schema)
    sample = load_sample("StartRun", 1)
    assert validator.is_valid(sample)
    assert not validator.is_valid({**sample, "schema_version": 2})
    assert not validator.is_valid({**sample, "type": "CancelRun"})
    assert not validator.is_valid({**sample, "payload": {**sample["payload"], "x": 1}})


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_asyncapi_document() -> None:
    doc = json.loads(generate.ASYNCAPI_PATH.read_text(encoding="utf-8"))
    assert doc["asyncapi"].startswith("3.")
    assert doc["info"]["title"] == "Baton events"
    assert doc["info"]["version"].startswith(f"{max(LATEST.values())}.")
    from contracts.topics import TOPICS

    addresses = {c["address"]: c for c in doc["channels"].values()}
    assert set(addresses) == {t.name for t in TOPICS}
    for topic in TOPICS:
        assert addresses[topic.name]["description"] == topic.purpose
    assert len(doc["components"]["messages"]) == len(REGISTRY)
    actions = sorted(op["action"] for op in doc["operations"].values())
    assert actions == sorted(["send", "receive"] * len(TOPICS))
    routed = {m for c in doc["channels"].values() for m in c["messages"]}
    assert routed == set(doc["components"]["messages"])
    for ref in _refs(doc):
        assert ref.startswith("#/")
        node: Any = doc
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]


def test_the_asyncapi_document_says_each_messages_kafka_key_as_the_samples_have_it() -> None:
    doc = json.loads(generate.ASYNCAPI_PATH.read_text(encoding="utf-8"))
    assert "keyed by run_id;" not in doc["info"]["description"]
    keys = {m["name"]: m["bindings"]["kafka"]["key"]["description"]
            for m in doc["components"]["messages"].values()}
    for type_, version in ENTRIES:
        sample = parse(raw(load_sample(type_, version)))
        if sample.run_id:
            assert sample.partition_key == sample.run_id
            assert "run_id" in keys[type_], type_
        else:
            assert "run_id" not in keys[type_].split(";")[0], type_
    changed = parse(raw(load_sample("RecordChanged", 1)))
    record = changed.payload.model_dump()
    assert changed.partition_key == f"{record['object_type']}:{record['record_id']}"
    assert keys["RecordChanged"].startswith("Kafka key: object_type:record_id")


# --- malformed input -------------------------------------------------------------------


def _reason(data: bytes) -> str:
    with pytest.raises(ContractError) as info:
        parse(data)
    return str(info.value)


def test_not_json_is_rejected() -> None:
    assert "not JSON" in _reason(b"\xff{ nope")
    assert "not JSON" in _reason(b"{ nope")
    assert "not a JSON object" in _reason(b"[1, 2]")


def test_unknown_type_is_rejected() -> None:
    data = {**load_sample("CancelRun", 1), "type": "LaunchRockets"}
    assert "unknown message type 'LaunchRockets'" in _reason(raw(data))


def test_unknown_version_is_rejected() -> None:
    data = {**load_sample("CancelRun", 1), "schema_version": 9}
    reason = _reason(raw(data))
    assert "unknown version 9 of CancelRun" in reason


def test_missing_type_or_version_is_rejected() -> None:
    data = load_sample("CancelRun", 1)
    del data["schema_version"]
    assert "schema_version" in _reason(raw(data))


def test_missing_payload_field_is_rejected() -> None:
    data = load_sample("RecordChanged", 1)
    del data["payload"]["record_id"]
    reason = _reason(raw(data))
    assert "RecordChanged v1 is invalid" in reason
    assert "record_id" in reason and "required" in reason.lower()


def test_missing_field_of_old_version_is_rejected_by_upcaster() -> None:
    data = load_sample("StartRun", 1)
    del data["payload"]["orchestration_name"]
    assert "StartRun v1 lacks field 'orchestration_name'" in _reason(raw(data))


def test_payload_too_big_is_rejected() -> None:
    data = load_sample("RecordChanged", 1)
    data["payload"]["new"]["blob"] = "x" * MAX_MESSAGE_BYTES
    reason = _reason(raw(data))
    assert "bytes; the limit is" in reason and str(MAX_MESSAGE_BYTES) in reason


def test_extra_payload_field_is_rejected() -> None:
    data = load_sample("CancelRun", 1)
    data["payload"]["surprise"] = True
    reason = _reason(raw(data))
    assert "payload.surprise" in reason or "surprise" in reason
    assert "Extra inputs are not permitted" in reason


def test_extra_envelope_field_and_non_object_payload_are_rejected() -> None:
    data = {**load_sample("CancelRun", 1), "colour": "blue"}
    assert "colour" in _reason(raw(data))
    data = {**load_sample("CancelRun", 1), "payload": [1]}
    assert "'payload' must be a JSON object" in _reason(raw(data))


def _walked(data: dict[str, Any]) -> str | None:
    """What refusal_of_dumped answered before it skipped the walk for plainly safe JSON."""
    try:
        check_values(data)
    except ContractError as exc:
        return str(exc)
    size = len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode())
    return f"message is {size} bytes; the limit is {MAX_MESSAGE_BYTES}" if (
        size > MAX_MESSAGE_BYTES) else None


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize("value", [
    "plain", "naïve ünïcode ✓", "\ud800", "bad\udfffend", 2**63, -(2**63) - 1, 2**63 - 1,
    float("inf"), float("nan"), 1e308, {"k\x00": 1}, {"\ud800": 1}, "a\x00b",
    _nested(63), _nested(65), _nested(200), ["x" * 1000] * 2000,
    {"deep": [[[[["\ud83d"]]]]]}, "9999-12-31T23:59:59-23:59",
])
def test_a_dumped_message_is_refused_for_the_same_reason_as_by_the_walk(value: Any) -> None:
    data = {"type": "WorkItemCompleted", "payload": {"outputs": {"answer": value}}}
    assert refusal_of_dumped(data) == _walked(data)
