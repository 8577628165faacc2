"""Generate the checked-in JSON Schemas and AsyncAPI document from the contract models.

    python -m contracts.generate            # (re)write contracts/schemas/*.json, asyncapi.json
    python -m contracts.generate --check    # exit 1, listing the stale files
    python -m contracts.generate --samples  # write golden samples that are missing (only)

Golden samples (contracts/samples/<Type>.v<N>.json) are written once and then checked in;
they are never regenerated, so an incompatible model change breaks their test.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from contracts.envelope import Envelope
from contracts.events.workitems import HOLDER_EVENTS
from contracts.registry import HOLDERS, LATEST, REGISTRY
from contracts.topics import TOPICS

HERE = Path(__file__).resolve().parent
SCHEMAS_DIR = HERE / "schemas"
SAMPLES_DIR = HERE / "samples"
ASYNCAPI_PATH = HERE / "asyncapi.json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def name_of(type_: str, version: int) -> str:
    return f"{type_}.v{version}"


def dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def envelope_schema(type_: str, version: int) -> dict[str, Any]:
    """The envelope's JSON Schema with the payload model of (type, version) inlined."""
    model = REGISTRY[(type_, version)]
    schema = Envelope.model_json_schema()
    defs: dict[str, Any] = schema.pop("$defs", {})
    defs.pop("Payload", None)
    payload = model.model_json_schema()
    defs.update(payload.pop("$defs", {}))
    props = schema["properties"]
    props["payload"] = payload
    props["type"] = {**props["type"], "const": type_}
    props["schema_version"] = {**props["schema_version"], "const": version}
    schema["title"] = name_of(type_, version)
    schema["description"] = (
        f"A Baton envelope carrying {type_} v{version} on topic {model.TOPIC!r}."
    )
    schema["$schema"] = JSON_SCHEMA_DIALECT
    schema["$id"] = f"https://baton.local/contracts/schemas/{name_of(type_, version)}.json"
    if defs:
        schema["$defs"] = defs
    return schema


def _rebase_refs(node: Any, prefix: str) -> Any:
    """Point local ``#/$defs/...`` refs at ``prefix + /$defs/...`` (for embedding)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                out[key] = prefix + value[1:]
            else:
                out[key] = _rebase_refs(value, prefix)
        return out
    if isinstance(node, list):
        return [_rebase_refs(v, prefix) for v in node]
    return node


RUN_KEY = "the run_id: a run's messages stay in order on one partition"
# The Kafka key of each message that is not always about a run (Envelope.partition_key:
# the run_id, else the envelope's key, else the event id).  Every other type: RUN_KEY.
MESSAGE_KEYS = {
    "RecordChanged": "object_type:record_id, set by the upstream producer in the envelope's"
                     " key (there is no run yet): one record's changes stay in order",
    "DeadLettered": "the dead-lettered message's own key (its run_id, or its envelope key)",
    "DirectoryPublished": "directory: compaction keeps the latest revision",
    "TokenIssued": "the token's SHA-256 hash: compaction keeps its latest fact",
    "TokenRevoked": "the token's SHA-256 hash: compaction keeps this in place of its issue",
    "DefinitionPublished": "name:version, one per published version",
    "NotificationSent": "the run_id; a notification about no run is keyed by the id of the"
                        " event that caused it",
}


def message_key(type_: str) -> str:
    return MESSAGE_KEYS.get(type_, RUN_KEY)


def _channel_id(topic: str) -> str:
    return topic.replace(".", "_")


def _message_id(type_: str, version: int) -> str:
    return f"{type_}_v{version}"


def _headers(type_: str, version: int, model: type[Any]) -> dict[str, Any]:
    """The Kafka headers of a message: a holder event says whom it gives the item to."""
    properties: dict[str, Any] = {
        "type": {"type": "string", "const": type_},
        "schema_version": {"type": "string", "const": str(version)},
        "correlation_id": {"type": "string"},
    }
    if issubclass(model, HOLDER_EVENTS):
        properties[HOLDERS] = {"type": "string", "description": (
            "whom the event gives the work item to, comma-separated (user:<id>, group:<id>, "
            "queue:<id>; the delegate of a delegation too): what the coordinator records as "
            "the run's participants. Left out when a key holds a comma (decision 40).")}
    return {"type": "object", "properties": properties,
            "required": ["type", "schema_version", "correlation_id"]}


def asyncapi_document(schemas: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:
    entries = sorted(REGISTRY)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    component_schemas: dict[str, Any] = {}
    for type_, version in entries:
        mid = _message_id(type_, version)
        embedded = copy.deepcopy(schemas[(type_, version)])
        embedded.pop("$schema", None)
        embedded.pop("$id", None)
        component_schemas[mid] = _rebase_refs(embedded, f"#/components/schemas/{mid}")
        model = REGISTRY[(type_, version)]
        superseded = version < LATEST[type_]
        messages[mid] = {
            "name": type_,
            "title": f"{type_} v{version}",
            "summary": (model.__doc__ or type_).strip().splitlines()[0],
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{mid}"},
            "headers": _headers(type_, version, model),
            "bindings": {"kafka": {"bindingVersion": "0.5.0", "key": {
                "type": "string", "description": f"Kafka key: {message_key(type_)}."}}},
            **({"deprecated": True} if superseded else {}),
        }
    for topic in TOPICS:
        cid = _channel_id(topic.name)
        on_topic = [(t, v) for t, v in entries if topic.name == REGISTRY[(t, v)].TOPIC]
        channels[cid] = {
            "address": topic.name,
            "description": topic.purpose,
            "messages": {
                _message_id(t, v): {"$ref": f"#/components/messages/{_message_id(t, v)}"}
                for t, v in on_topic
            },
        }
        for action in ("send", "receive"):
            operations[f"{action}_{cid}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{cid}"},
                "summary": f"{action.capitalize()} on {topic.name}: {topic.purpose}",
                "messages": [
                    {"$ref": f"#/channels/{cid}/messages/{_message_id(t, v)}"} for t, v in on_topic
                ],
            }
    highest = max(LATEST.values())
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Baton events",
            "version": f"{highest}.{len(REGISTRY)}.0",
            "description": (
                "Every Baton message is one JSON envelope; type and schema_version also "
                "ride in Kafka headers (and a holder event's holders, decision 40). The Kafka "
                "key is the envelope's run_id for every "
                "message about a run; RecordChanged, which comes before any run, is keyed "
                "by object_type:record_id, and the compacted access and definitions topics "
                "by what each message is the latest of (each message's Kafka binding says "
                "its key). "
                "Version: major = the highest "
                "published schema_version, minor = the number of published (type, version) "
                "pairs. Generated by `make schemas`; do not edit."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": component_schemas, "messages": messages},
    }


def generated_files() -> dict[Path, str]:
    """Every generated file and its exact expected content."""
    schemas = {key: envelope_schema(*key) for key in sorted(REGISTRY)}
    files = {SCHEMAS_DIR / f"{name_of(*key)}.json": dumps(s) for key, s in schemas.items()}
    files[ASYNCAPI_PATH] = dumps(asyncapi_document(schemas))
    return files


def stale_files() -> list[Path]:
    """Generated files whose content differs or is missing, and orphan schema files."""
    expected = generated_files()
    stale = [
        path
        for path, text in expected.items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]
    if SCHEMAS_DIR.exists():
        stale += [p for p in sorted(SCHEMAS_DIR.glob("*.json")) if p not in expected]
    return sorted(stale)


def write_generated() -> list[Path]:
    expected = generated_files()
    written = []
    SCHEMAS_DIR.mkdir(parents=True, exist_ok=True)
    for orphan in sorted(SCHEMAS_DIR.glob("*.json")):
        if orphan not in expected:
            orphan.unlink()
            written.append(orphan)
    for path, text in expected.items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


# --- golden samples (written once when missing, then checked in) ----------------------

_RUN = "run-7f3c9a2e"
_CORR = "corr-1b6d0e44"
_WORK_ITEM = "wi-5a1f3c07"
_DUE = "2025-03-07T17:00:00Z"
_WI_BASE: dict[str, Any] = {
    "work_item_id": _WORK_ITEM,
    "step": "hr_form",
    "title": "Complete onboarding form for Ada Lovelace",
    "orchestration": "employee_onboarding",
    "actor": "assignment",
    "assignee_kind": "queue",
    "assignee": "hr-queue",
    "recipients": ["hr-team@example.com"],
    "due_at": _DUE,
}
_RUN_BASE: dict[str, Any] = {
    "orchestration": "employee_onboarding",
    "version": 3,
    "record_key": "employee:E-1042",
}

# (type, version) -> (producer, payload).  Samples for the coordinator's run events etc.
SAMPLE_PAYLOADS: dict[tuple[str, int], tuple[str, dict[str, Any]]] = {
    ("StartRun", 1): (
        "trigger",
        {
            "orchestration_name": "employee_onboarding",
            "variables": {"employee_id": "E-1042", "start_date": "2025-03-17"},
        },
    ),
    ("StartRun", 2): (
        "trigger",
        {
            "orchestration": "employee_onboarding",
            "version": 3,
            "inputs": {"employee_id": "E-1042", "start_date": "2025-03-17"},
            "record": {
                "object_type": "employee",
                "record_id": "E-1042",
                "fields": {"name": "Ada Lovelace", "department": "Engineering"},
            },
            "requested_by": "trigger",
            "at_most_one_active_per_record": True,
        },
    ),
    ("CancelRun", 1): (
        "operator-api",
        {"requested_by": "ops@example.com", "reason": "duplicate hire record"},
    ),
    ("SuspendRun", 1): (
        "operator-api",
        {"requested_by": "ops@example.com", "reason": "payroll system maintenance"},
    ),
    ("ResumeRun", 1): (
        "operator-api",
        {"requested_by": "ops@example.com", "reason": "maintenance over"},
    ),
    ("RetryStep", 1): (
        "operator-api",
        {"requested_by": "ops@example.com", "reason": "endpoint fixed", "step": "payroll"},
    ),
    ("SkipStep", 1): (
        "operator-api",
        {
            "requested_by": "ops@example.com",
            "reason": "set up by hand",
            "step": "payroll",
            "outputs": {"payroll_id": "P-88812"},
        },
    ),
    ("MigrateRun", 1): (
        "operator-api",
        {"requested_by": "ops@example.com", "reason": "fix in v4", "to_version": 4},
    ),
    ("TimerFired", 1): (
        "stage-coordinator",
        {"timer_id": "tmr-3e91b0", "purpose": "retry", "step": "payroll", "epoch": 2},
    ),
    ("DeadLettered", 1): (
        "step-runner",
        {
            "reason": "not JSON: Expecting value: line 1 column 1 (char 0)",
            "source_topic": "steps.dispatch",
            "source_partition": 2,
            "source_offset": 18734,
            "consumer_group": "step-runner",
            "original_key": _RUN,
            "original_value_b64": "bm90IGpzb24=",
            "original_headers": {"type": "StepRequested", "schema_version": "1"},
        },
    ),
    ("NotificationSent", 1): (
        "notification",
        {
            "recipient": "hr-team@example.com",
            "channel": "email",
            "template": "work_item_assigned",
            "subject": "New task: Complete onboarding form for Ada Lovelace",
            "body": "A new task is waiting in the HR queue. Due 2025-03-07 17:00 UTC.",
            "source_event_id": "9d2f4c1a0b7e4e53a6c1d8f0e2b3a4c5",
            "source_type": "WorkItemAssigned",
            "tags": {"orchestration": "employee_onboarding"},
        },
    ),
    ("RecordChanged", 1): (
        "hr-system",
        {
            "object_type": "employee",
            "record_id": "E-1042",
            "change": "created",
            "new": {"name": "Ada Lovelace", "department": "Engineering", "manager": "M-7"},
            "old": {},
        },
    ),
    ("RecordUpdateRequested", 1): (
        "step-runner",
        {
            "object_type": "employee",
            "record_id": "E-1042",
            "fields": {"onboarding_status": "complete"},
            "step": "mark_onboarded",
        },
    ),
    ("RunStarted", 1): (
        "stage-coordinator",
        {**_RUN_BASE, "inputs": {"employee_id": "E-1042", "start_date": "2025-03-17"}},
    ),
    ("RunStarted", 2): (
        "stage-coordinator",
        {**_RUN_BASE, "inputs": {"employee_id": "E-1042", "start_date": "2025-03-17"},
         "stage": "hr_intake"},
    ),
    ("RunStartRejected", 1): (
        "stage-coordinator",
        {**_RUN_BASE, "reason": "a run is already active for employee:E-1042"},
    ),
    ("StageStarted", 1): ("stage-coordinator", {**_RUN_BASE, "stage": "provisioning"}),
    ("StageSkipped", 1): ("stage-coordinator", {**_RUN_BASE, "stage": "relocation"}),
    ("StageCompleted", 1): (
        "stage-coordinator",
        {**_RUN_BASE, "stage": "hr_intake", "duration_seconds": 5412.5},
    ),
    ("StageCompleted", 2): (
        "stage-coordinator",
        {**_RUN_BASE, "stage": "hr_intake", "duration_seconds": 5412.5,
         "next_stage": "provisioning"},
    ),
    ("StepStatusChanged", 1): (
        "stage-coordinator",
        {
            **_RUN_BASE,
            "stage": "provisioning",
            "step": "payroll",
            "status": "completed",
            "previous": "running",
            "duration_seconds": 1.84,
        },
    ),
    ("RunCompleted", 1): ("stage-coordinator", {**_RUN_BASE, "duration_seconds": 259200.0}),
    ("RunCompleted", 2): (
        "stage-coordinator",
        {**_RUN_BASE, "duration_seconds": 259200.0, "stage": "first_day",
         "stage_duration_seconds": 28800.0},
    ),
    ("RunErrored", 1): (
        "stage-coordinator",
        {
            **_RUN_BASE,
            "stage": "provisioning",
            "step": "payroll",
            "error": "HTTP 503 from payroll after 5 attempts",
        },
    ),
    ("RunCanceled", 1): ("stage-coordinator", {**_RUN_BASE, "reason": "hire withdrawn"}),
    ("RunSuspended", 1): ("stage-coordinator", dict(_RUN_BASE)),
    ("RunResumed", 1): ("stage-coordinator", dict(_RUN_BASE)),
    ("RunMigrated", 1): ("stage-coordinator", {**_RUN_BASE, "version": 4, "from_version": 3}),
    ("StepRequested", 1): (
        "stage-coordinator",
        {
            "orchestration": "employee_onboarding",
            "version": 3,
            "stage": "provisioning",
            "step": "payroll",
            "attempt": 1,
            "action": "http",
            "inputs": {"url": "https://payroll.example.com/api/employees", "method": "POST"},
            "timeout_seconds": 30.0,
            "idempotency_key": f"{_RUN}:payroll:1",
        },
    ),
    ("StepRequested", 2): (
        "stage-coordinator",
        {
            "orchestration": "employee_onboarding",
            "version": 3,
            "stage": "provisioning",
            "step": "payroll",
            "attempt": 2,
            "action": "http",
            "inputs": {"url": "https://payroll.example.com/api/employees", "method": "POST"},
            "timeout_seconds": 30.0,
            "idempotency_key": f"{_RUN}:payroll:2",
            "operation_key": f"{_RUN}:payroll:visit-1",
        },
    ),
    ("StepCompleted", 1): (
        "assignment",
        {
            "step": "manager_approval",
            "attempt": 1,
            "outputs": {"laptop": "MacBook Pro 14"},
            "completed_by": "grace@example.com",
            "decision": "approved",
            "comment": "Welcome aboard.",
        },
    ),
    ("StepFailed", 1): (
        "step-runner",
        {
            "step": "payroll",
            "attempt": 2,
            "error": "HTTP 503 Service Unavailable",
            "retryable": True,
        },
    ),
    ("WorkItemRequested", 1): (
        "stage-coordinator",
        {
            "orchestration": "employee_onboarding",
            "version": 3,
            "stage": "hr_intake",
            "step": "hr_form",
            "attempt": 1,
            "kind": "interactive",
            "title": "Complete onboarding form for Ada Lovelace",
            "assignee": {"kind": "queue", "value": "hr-queue"},
            "form": {"fields": [{"name": "laptop", "type": "string", "required": True}]},
            "record": {"object_type": "employee", "record_id": "E-1042"},
            "context": {"employee_name": "Ada Lovelace"},
            "due_at": _DUE,
            "reminders_before_due_seconds": [86400.0],
            "reminders_after_due_seconds": [3600.0, 86400.0],
            "escalation": {
                "after_due_seconds": 172800.0,
                "action": "release_to_group",
                "group": "hr-leads",
            },
        },
    ),
    ("WorkItemCancelRequested", 1): (
        "stage-coordinator",
        {"step": "hr_form", "reason": "run canceled"},
    ),
    ("WorkItemAssigned", 1): ("assignment", dict(_WI_BASE)),
    ("WorkItemClaimed", 1): ("assignment", {**_WI_BASE, "actor": "jane@example.com"}),
    ("WorkItemReleased", 1): ("assignment", {**_WI_BASE, "actor": "jane@example.com"}),
    ("WorkItemReassigned", 1): (
        "assignment",
        {
            **_WI_BASE,
            "actor": "ops@example.com",
            "assignee_kind": "user",
            "assignee": "li@example.com",
            "recipients": ["li@example.com"],
            "previous_assignee": "jane@example.com",
            "reason": "jane is on leave",
        },
    ),
    ("WorkItemDelegated", 1): (
        "assignment",
        {**_WI_BASE, "actor": "jane@example.com", "delegate": "li@example.com"},
    ),
    ("WorkItemCompleted", 1): (
        "assignment",
        {**_WI_BASE, "actor": "jane@example.com", "decision": None, "comment": "done"},
    ),
    ("WorkItemCompleted", 3): (
        "assignment",
        {**_WI_BASE, "actor": "jane@example.com", "decision": None, "comment": "done",
         "contacts": [{"user": "hr-team@example.com", "email": "hr-team@example.com",
                       "chat_handle": "@hr-team", "channels": ["chat", "email"]}],
         "attempt": 1, "outputs": {"start_date": "2025-04-01", "laptop": "macbook"}},
    ),
    ("WorkItemCanceled", 1): ("assignment", {**_WI_BASE, "reason": "run canceled"}),
    ("WorkItemReminderDue", 1): ("assignment", {**_WI_BASE, "overdue": True}),
    ("WorkItemEscalated", 1): (
        "assignment",
        {
            **_WI_BASE,
            "assignee_kind": "group",
            "assignee": "hr-leads",
            "action": "release_to_group",
            "previous_assignee": "jane@example.com",
        },
    ),
    ("WorkItemCommented", 1): (
        "assignment",
        {**_WI_BASE, "actor": "jane@example.com", "comment": "Waiting on the start date."},
    ),
    ("WorkItemAssignmentFailed", 1): (
        "assignment",
        {
            **_WI_BASE,
            "assignee_kind": "manager_of",
            "assignee": "",
            "recipients": [],
            "error": "employee E-1042 has no manager on record",
        },
    ),
}


_TOKEN_HASH = "9f2c" * 16
# The envelope key of each sample that is about no run (the others carry _RUN).
SAMPLE_KEYS = {
    "RecordChanged": "employee:E-1042",
    "DirectoryPublished": "directory",
    "TokenIssued": _TOKEN_HASH,
    "TokenRevoked": _TOKEN_HASH,
    "DefinitionPublished": "employee_onboarding:3",
}
SAMPLE_PAYLOADS.update({
    ("DirectoryPublished", 1): ("assignment", {
        "revision": 12,
        "people": [
            {"id": "dana", "roles": ["admin"], "groups": ["hr_leads"], "queues": []},
            {"id": "hana", "roles": [], "groups": [], "queues": ["hr"]},
        ],
    }),
    ("TokenIssued", 1): ("assignment", {
        "token_hash": _TOKEN_HASH, "user_id": "hana", "kind": "session",
        "expires_at": "2025-03-04T21:15:00Z",
    }),
    ("TokenRevoked", 1): ("assignment", {"token_hash": _TOKEN_HASH}),
    ("DefinitionPublished", 1): ("trigger", {
        "name": "employee_onboarding", "version": 3,
        "definition": {"name": "employee_onboarding", "version": 3, "stages": [
            {"name": "welcome", "steps": [{"name": "greet", "action": "noop"}]}]},
        "published_by": "dana", "published_at": "2025-03-04T09:15:00Z",
    }),
})


def sample_envelope(type_: str, version: int) -> dict[str, Any]:
    producer, payload = SAMPLE_PAYLOADS[(type_, version)]
    name = name_of(type_, version)
    upstream = type_ in SAMPLE_KEYS
    return {
        "event_id": uuid.uuid5(uuid.NAMESPACE_URL, f"baton-sample:{name}").hex,
        "type": type_,
        "schema_version": version,
        "occurred_at": "2025-03-04T09:15:00Z",
        "run_id": None if upstream else _RUN,
        "key": SAMPLE_KEYS.get(type_),
        "correlation_id": _CORR,
        "causation_id": None if upstream else "3c2b1a09f8e74d6c5b4a39281706f5e4",
        "producer": producer,
        "payload": payload,
    }


def write_missing_samples() -> list[Path]:
    SAMPLES_DIR.mkdir(parents=True, exist_ok=True)
    written = []
    for key in sorted(REGISTRY):
        path = SAMPLES_DIR / f"{name_of(*key)}.json"
        if path.exists():
            continue
        if key not in SAMPLE_PAYLOADS:
            raise SystemExit(f"no example payload for {name_of(*key)}: add it to SAMPLE_PAYLOADS")
        path.write_text(dumps(sample_envelope(*key)), encoding="utf-8")
        written.append(path)
    return written


def _show(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contracts.generate", description=__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="exit 1 if generated files are stale")
    group.add_argument("--samples", action="store_true", help="write missing golden samples")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print("stale generated contract files (run `make schemas`):", file=sys.stderr)
            for path in stale:
                print(f"  {_show(path)}", file=sys.stderr)
            return 1
        print("contract schemas are up to date")
        return 0
    if args.samples:
        for path in write_missing_samples():
            print(f"wrote {_show(path)}")
        return 0
    for path in write_generated():
        print(f"{'removed' if not path.exists() else 'wrote'} {_show(path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
