"""Bad input at every edge: garbage on each consumed topic lands on `dlq` with the reason (or
is ignored, where that is the documented behaviour), hostile HTTP bodies and definitions get
a 4xx with a message, and the services stay healthy and still complete a run afterwards.

The HTTP cases marked "was a 500" are the server errors `make fuzz` (Schemathesis) and this
module found; each is a regression test.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from e2e.conftest import ROOT, publish_definition, wait_for

from contracts import encode, new_event
from contracts.events.records import RecordChanged
from contracts.registry import MAX_MESSAGE_BYTES, REGISTRY, RUN_TOPICS
from infra.embedded import EmbeddedServers

pytestmark = pytest.mark.e2e

SAMPLES = ROOT / "contracts" / "samples"
# topic -> (its consumer group, a sample of a type consumed there)
CONSUMED = {
    "records.changes": ("trigger", "RecordChanged.v1"),
    "commands": ("stage-coordinator", "CancelRun.v1"),
    "steps.outcomes": ("stage-coordinator", "StepCompleted.v1"),
    "steps.dispatch": ("step-runner", "StepRequested.v2"),
    "workitems.dispatch": ("assignment", "WorkItemRequested.v1"),
    "workitems.events": ("notification", "WorkItemClaimed.v1"),
    "runs.events": ("notification", "RunStarted.v1"),
}
HOSTILE = "'; DROP TABLE runs; -- ${vars.__class__} {{7*7}} \u202e\u2066 $where 💥 \x00"


def sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text())
    data["event_id"] = uuid.uuid4().hex
    return data


def drop_required_field(data: dict[str, Any]) -> str:
    """Drop a field the payload (or else the envelope) requires; say which."""
    model = REGISTRY[(data["type"], data["schema_version"])]
    required = sorted(n for n, f in model.model_fields.items() if f.is_required())
    if required:
        del data["payload"][required[0]]
        return required[0]
    del data["correlation_id"]
    return "correlation_id"


def garbage(name: str) -> dict[str, tuple[bytes, str]]:
    """kind -> (the bytes, what the dead letter's reason must say)."""
    good = sample(name)
    missing = sample(name)
    dropped = drop_required_field(missing)
    nested: Any = "deep"
    for _ in range(100):
        nested = {"n": nested}
    about_a_run = REGISTRY[(good["type"], good["schema_version"])].TOPIC in RUN_TOPICS
    runless = {  # was an orphan work item in a real queue (workitems.dispatch)
        "no-run": (json.dumps({**good, "run_id": None}).encode(), "has no run_id"),
    } if about_a_run else {}
    return {
        **runless,
        # was a run stranded by comparing naive and aware times at the person's completion
        "zone-less-time": (json.dumps({**good, "occurred_at": "2026-11-30T09:00:00"}).encode(),
                           "timezone"),
        "not-json": (b"{not json at all", "not JSON"),
        "not-utf8": (b"\xff\xfe\x00garbage", "not JSON"),
        "array": (b"[1, 2, 3]", "not a JSON object"),
        "unknown-type": (json.dumps({**good, "type": "LaunchRockets"}).encode(),
                         "unknown message type 'LaunchRockets'"),
        "unknown-version": (json.dumps({**good, "schema_version": 99}).encode(),
                            "unknown version 99"),
        "missing-field": (json.dumps(missing).encode(), dropped),
        "extra-field": (json.dumps({**good, "payload": {**good["payload"], "surprise": 1}})
                        .encode(), "surprise"),
        "extra-envelope-field": (json.dumps({**good, "colour": "blue"}).encode(), "colour"),
        # Past Baton's limit and under the broker's own (1 MiB), which refuses bigger ones.
        "too-big": (json.dumps({**good, "pad": "A" * (MAX_MESSAGE_BYTES + 20_000)}).encode(),
                    f"the limit is {MAX_MESSAGE_BYTES}"),
        "nan": (json.dumps({**good, "payload": {**good["payload"], "x": float("nan")}})
                .encode(), "NaN"),
        "deep": (json.dumps({**good, "pad": nested}).encode(), "nested more than 64 levels"),
        "surrogate": (json.dumps({**good, "run_id": "\ud800"}).encode(), "not valid Unicode"),
        # The same written as its raw bytes (ED A0 80), which the JSON reader also takes.
        "raw-surrogate": (json.dumps({**good, "payload": {**good["payload"], "x": "\ud800"}},
                                     ensure_ascii=False).encode("utf-8", "surrogatepass"),
                          "not valid Unicode"),
        "huge-int": (json.dumps({**good, "schema_version": 10**40}).encode(), "64 bits"),
    }


async def send_raw(bootstrap: str, messages: list[tuple[str, bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap,
                                max_request_size=4 * MAX_MESSAGE_BYTES)
    await producer.start()
    try:
        for topic, key, value in messages:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def dead_letters(bootstrap: str, prefix: str) -> dict[str, dict[str, Any]]:
    """The dlq's letters whose original key starts with prefix, by original key."""
    consumer = AIOKafkaConsumer("dlq", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None,
                                max_partition_fetch_bytes=4 * MAX_MESSAGE_BYTES)
    await consumer.start()
    found: dict[str, dict[str, Any]] = {}
    try:
        while batch := await consumer.getmany(timeout_ms=1000):
            for records in batch.values():
                for record in records:
                    letter = json.loads(record.value)
                    key = letter["payload"].get("original_key") or ""
                    if key.startswith(prefix) and _from_named_group(letter["payload"]):
                        found[key] = letter
    finally:
        await consumer.stop()
    return found


def _from_named_group(letter: dict[str, Any]) -> bool:
    """The letter of the group CONSUMED names for its topic.  workitems.events is also read
    by the stage-coordinator's consumer, which dead-letters garbage as well."""
    named = CONSUMED.get(letter.get("source_topic", ""))
    return named is None or letter.get("consumer_group") == named[0]


async def healthy_and_working(stack: Any, admin: dict[str, str], mongo: Any) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for name in ("trigger", "stage-coordinator", "step-runner", "assignment", "notification"):
            assert stack.procs[name].poll() is None, f"{name} died"
            health = await client.get(f"{stack.url(name)}/health")
            assert health.status_code == 200, (name, health.text)
        started = await client.post(f"{stack.url('trigger')}/runs",
                                    json={"orchestration": "hello"}, headers=admin)
        assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]

    async def completed() -> bool:
        doc = await mongo.runs.find_one({"_id": run_id})
        return bool(doc and doc["status"] == "completed")

    await wait_for(completed, timeout=30)


@dataclass(frozen=True)
class OwnServers:
    kafka_bootstrap: str
    mongodb_uri: str

    def env(self, database: str) -> dict[str, str]:
        return {"BATON_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
                "BATON_MONGODB_URI": self.mongodb_uri, "BATON_MONGODB_DATABASE": database}


@pytest.fixture(scope="module")
def servers(servers: Any) -> Iterator[Any]:
    """This module's own embedded Kafka and MongoDB: the garbage it publishes on every topic
    would trip the other modules that read those topics (and the replay of everything).
    Against real clusters (BATON_KAFKA_BOOTSTRAP, containers) the session's are shared."""
    if os.environ.get("BATON_KAFKA_BOOTSTRAP") or os.environ.get("BATON_TEST_BACKEND"):
        yield servers
        return
    data_dir = ROOT / ".baton" / f"test-{os.getpid()}-hostile"
    embedded = EmbeddedServers(data_dir).start()
    try:
        yield OwnServers(embedded.kafka_bootstrap, embedded.mongodb_uri)
    finally:
        embedded.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def published(stack: Any) -> Iterator[None]:
    with httpx.Client(timeout=10) as client:
        response = client.post(f"{stack.url('trigger')}/definitions",
                               content=(ROOT / "examples" / "hello.yaml").read_bytes(),
                               headers={"Authorization": "Bearer bt_e2e_admin_token"})
        assert response.status_code == 201, response.text
    yield


# --- Kafka ------------------------------------------------------------------------------


async def test_garbage_on_every_consumed_topic_is_dead_lettered_with_the_reason(
    stack: Any, admin: dict[str, str], mongo: Any, servers: Any, published: None
) -> None:
    prefix = f"hostile-{uuid.uuid4().hex[:8]}"
    expected: dict[str, tuple[str, str, str, bytes]] = {}  # key -> topic, group, reason, bytes
    messages = []
    for topic, (group, name) in CONSUMED.items():
        for kind, (value, reason) in garbage(name).items():
            key = f"{prefix}:{topic}:{kind}"
            expected[key] = (topic, group, reason, value)
            messages.append((topic, key.encode(), value))
    await send_raw(servers.kafka_bootstrap, messages)

    async def all_letters() -> dict[str, dict[str, Any]]:
        letters = await dead_letters(servers.kafka_bootstrap, prefix)
        return letters if len(letters) >= len(expected) else {}

    try:
        letters = await wait_for(all_letters, timeout=60, interval=1.0)
    except AssertionError:
        letters = await dead_letters(servers.kafka_bootstrap, prefix)
        missing = sorted(set(expected) - set(letters))
        raise AssertionError(f"not dead-lettered: {missing}") from None
    for key, (topic, group, reason, value) in expected.items():
        letter = letters[key]["payload"]
        assert letter["source_topic"] == topic and letter["consumer_group"] == group, letter
        assert letter["reason"].startswith("unparseable: "), (key, letter["reason"])
        assert reason in letter["reason"], (key, letter["reason"][:300])
        kept = base64.b64decode(letter["original_value_b64"])
        assert value.startswith(kept) and len(kept) <= 256 * 1024
    too_big = letters[f"{prefix}:commands:too-big"]["payload"]["reason"]
    assert "the original is cut to its first 262144 of" in too_big
    await healthy_and_working(stack, admin, mongo)


async def test_valid_messages_not_meant_for_a_topic_are_dead_lettered_as_not_handled(
    stack: Any, admin: dict[str, str], mongo: Any, servers: Any, published: None
) -> None:
    prefix = f"misplaced-{uuid.uuid4().hex[:8]}"
    wrong = {  # topic -> a valid message its consumer does not take
        "records.changes": sample("RunStarted.v1"),
        "steps.dispatch": sample("StepCompleted.v1"),
        "workitems.dispatch": sample("WorkItemClaimed.v1"),
    }
    await send_raw(servers.kafka_bootstrap, [
        (topic, f"{prefix}:{topic}".encode(), json.dumps(data).encode())
        for topic, data in wrong.items()])

    async def all_letters() -> dict[str, dict[str, Any]]:
        letters = await dead_letters(servers.kafka_bootstrap, prefix)
        return letters if len(letters) == len(wrong) else {}

    letters = await wait_for(all_letters, timeout=30, interval=1.0)
    for topic, data in wrong.items():
        reason = letters[f"{prefix}:{topic}"]["payload"]["reason"]
        assert reason == f"{data['type']} is not handled on {topic}", reason
    await healthy_and_working(stack, admin, mongo)


async def test_valid_envelopes_with_hostile_strings_are_ignored_or_handled(
    stack: Any, admin: dict[str, str], mongo: Any, servers: Any, published: None
) -> None:
    """Valid messages with hostile text: nothing matches them (no run, no subscription), so
    they are ignored as documented (a command or outcome for an unknown run is dropped; a
    record change no trigger matches starts nothing), and nothing breaks."""
    prefix = f"odd-{uuid.uuid4().hex[:8]}"
    messages = []
    for topic, (_, name) in CONSUMED.items():
        data = sample(name)
        data["run_id"] = f"run-{HOSTILE[:40]}"
        data["correlation_id"] = HOSTILE[:100]
        data["producer"] = HOSTILE[:100]
        for field, value in data["payload"].items():
            if isinstance(value, str) and field not in ("kind", "status", "change"):
                data["payload"][field] = (HOSTILE * 3)[:100]
            elif isinstance(value, dict):
                data["payload"][field] = {HOSTILE[:20]: HOSTILE, "$gt": "", "a.b": [HOSTILE]}
        messages.append((topic, f"{prefix}:{topic}".encode(), json.dumps(data).encode()))
    change = new_event(RecordChanged(object_type=HOSTILE[:100], record_id=HOSTILE[:100],
                                     change="created", new={"$where": HOSTILE}),
                       producer="upstream", key=f"{prefix}:record")
    messages.append(("records.changes", f"{prefix}:record".encode(), encode(change)))
    await send_raw(servers.kafka_bootstrap, messages)
    await asyncio.sleep(3)  # let every consumer take its message
    await healthy_and_working(stack, admin, mongo)
    assert await mongo.runs.count_documents({"record_key": {"$regex": "^'; DROP"}}) == 0
    letters = await dead_letters(servers.kafka_bootstrap, prefix)
    for key, letter in letters.items():  # if one was dead-lettered, it says why
        assert letter["payload"]["reason"], key


# --- HTTP -------------------------------------------------------------------------------


def detail(response: httpx.Response) -> str:
    """The problem's message and its field problems (RFC 9457 problem details)."""
    assert response.headers["content-type"] == "application/problem+json", response.text
    body = response.json()
    assert body.get("detail"), response.text
    return json.dumps([body["detail"], body.get("errors", [])])


def hello_with(step_lines: str) -> str:
    return (ROOT / "examples" / "hello.yaml").read_text().replace(
        "        action: noop", "        action: noop\n" + step_lines)


BOMB = "".join(f"{c}: &{c} [" + ",".join([f"*{p}"] * 10 if p else ["lol"] * 10) + "]\n"
               for p, c in zip(["", *"abcdefgh"], "abcdefghi", strict=True))
COSTLY = "[" + ",".join(["0"] * 300) + "]"

DEFINITIONS = [  # (label, body, format, status, what the message says)
    ("not-utf8", b"name: \xff\xfe\nstages: [\n", "yaml", 422, "YAML syntax error"),
    ("billion-laughs", BOMB.encode(), "yaml", 422, "aliases?"),
    ("deep-yaml", b"name: " + b"[" * 100_000, "yaml", 422, "nests more than 64 levels"),
    ("deep-json", b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "json", 422,
     "nests more than 64 levels"),
    ("huge-int-json", b'{"name": ' + b"9" * 5000 + b"}", "json", 422, "4300 digits"),
    ("too-big", b"description: " + b"x" * 300_000, "yaml", 413, "at most 262144 bytes"),
    ("duplicate-key", b"name: a\nname: b\n", "yaml", 422, "duplicate key 'name'"),
    ("python-tag", b"name: !!python/object/apply:os.system ['true']\n", "yaml", 422,
     "could not determine a constructor"),
    ("binary", hello_with("        inputs: {x: !!binary /w==}\n").encode(), "yaml", 422,
     "a bytes value is not allowed"),
    ("nan", hello_with("        inputs: {x: .nan}\n").encode(), "yaml", 422,
     "not a number JSON can hold"),
    ("import", hello_with("        when: \"__import__('os').system('true')\"\n").encode(),
     "yaml", 422, "unknown function '__import__'"),
    ("dunder", hello_with("        when: \"run.__class__ == 'x'\"\n").encode(), "yaml", 422,
     "__class__"),
    ("costly", hello_with(f"        when: \"{COSTLY}.map(a, {COSTLY}.map(b, a)).size() > 0\"\n")
     .encode(), "yaml", 422, "too costly"),
    ("nested-macros", hello_with(
        "        when: \"[1].all(a, [1].all(b, [1].all(c, a == b)))\"\n").encode(), "yaml", 422,
     "nested 3 deep"),
    # was a 500: an OverflowError from the duration parser
    ("huge-duration", hello_with("        timeout: 99999999999d\n").encode(), "yaml", 422,
     "longest duration"),
    # was a 500: MongoDB cannot store an integer beyond 64 bits
    ("huge-int-yaml", hello_with("        inputs: {x: " + "9" * 30 + "}\n").encode(), "yaml",
     422, "too big (64 bits)"),
]


@pytest.mark.parametrize("label, body, fmt, status, message", DEFINITIONS,
                         ids=[d[0] for d in DEFINITIONS])
async def test_hostile_definitions_get_a_4xx_with_the_reason(
    stack: Any, admin: dict[str, str], label: str, body: bytes, fmt: str, status: int,
    message: str
) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        for path in ("/definitions/validate", "/definitions"):
            response = await client.post(f"{stack.url('trigger')}{path}", content=body,
                                         params={"format": fmt}, headers=admin)
            assert response.status_code == status, (path, response.status_code, response.text)
            assert message in detail(response), response.text[:500]


async def test_hostile_run_starts_get_a_4xx(stack: Any, admin: dict[str, str],
                                           published: None) -> None:
    trigger = stack.url("trigger")
    json_headers = {**admin, "Content-Type": "application/json"}
    nested: Any = 1
    for _ in range(100):
        nested = [nested]
    cases = [
        # was a 500: a version beyond 64 bits reached MongoDB
        (json.dumps({"orchestration": "hello", "version": 2**40}).encode(), 422, "version"),
        # was a 500: an unpaired surrogate could not be encoded for Kafka
        (b'{"orchestration": "hello", "inputs": {"x": "\\ud800"}}', 422, "not valid Unicode"),
        (b'{"orchestration": "hello", "inputs": {"x": NaN}}', 422, "NaN"),
        (b'{"orchestration": "hello", "inputs": {"x": 1e999}}', 422, "out of range"),
        (json.dumps({"orchestration": "hello", "inputs": {"x": 2**70}}).encode(), 422,
         "64 bits"),
        (json.dumps({"orchestration": "hello", "inputs": {"x": nested}}).encode(), 422,
         "nested more than 64"),
        # was a 500: 1e15 is written back as 1000000000000000.0, past Kafka's 1 MB
        (b'{"orchestration": "hello", "inputs": {"x": [' + b",".join([b"1e15"] * 150_000)
         + b"]}}", 413, "over 1000000 bytes"),
        (b'{"orchestration": "hello", "inputs": {"x": "' + b"A" * 1_100_000 + b'"}}', 413,
         "the limit is 1000000"),
        (b"[" * 100_000, 422, "nests more than 64"),
        (json.dumps({"orchestration": HOSTILE}).encode(), 404, "no published"),
    ]
    async with httpx.AsyncClient(timeout=30) as client:
        for body, status, message in cases:
            response = await client.post(f"{trigger}/runs", content=body, headers=json_headers)
            assert response.status_code == status, (body[:80], response.text[:300])
            assert message in detail(response), (body[:80], response.text[:300])
        # was a 500: the same for the version of GET /definitions/{name}
        shown = await client.get(f"{trigger}/definitions/hello", params={"version": 10**25},
                                 headers=admin)
        assert shown.status_code == 422, shown.text


async def test_a_chunked_body_past_the_limit_is_refused(stack: Any, admin: dict[str, str]) -> None:
    async def chunks() -> Any:
        for _ in range(20):
            yield b"x" * 100_000

    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(f"{stack.url('trigger')}/definitions/validate",
                                     content=chunks(), headers=admin)
    assert response.status_code == 413 and "the limit is 1000000" in detail(response)


async def test_hostile_query_and_control_requests_get_a_4xx(
    stack: Any, admin: dict[str, str], mongo: Any, published: None
) -> None:
    coordinator = stack.url("stage-coordinator")
    async with httpx.AsyncClient(timeout=30) as client:
        started = await client.post(f"{stack.url('trigger')}/runs",
                                    json={"orchestration": "hello"}, headers=admin)
        run_id = started.json()["run_id"]
        await wait_for(lambda: mongo.runs.find_one({"_id": run_id}), timeout=30)
        # was a 500: an OverflowError from the duration parser
        stats = await client.get(f"{coordinator}/stats", params={"since": "99999999999d"},
                                 headers=admin)
        assert stats.status_code == 422 and "longest duration" in detail(stats)
        migrate = await client.post(f"{coordinator}/runs/{run_id}/migrate",
                                    json={"to_version": 2**40}, headers=admin)
        assert migrate.status_code == 422, migrate.text
        skip = await client.post(
            f"{coordinator}/runs/{run_id}/skip", headers={**admin, "Content-Type":
                                                          "application/json"},
            content=b'{"step": "hello", "outputs": {"x": [' + b",".join([b"1e15"] * 150_000)
            + b"]}}")
        assert skip.status_code == 413 and "over 1000000 bytes" in detail(skip)
        assignment = stack.url("assignment")
        complete = await client.post(f"{assignment}/work/nothing/complete",
                                     content=b'{"values": {"n": 1e999}}',
                                     headers={**admin, "Content-Type": "application/json"})
        assert complete.status_code == 422 and "out of range" in detail(complete)
        for url in (stack.url("notification") + "/deliveries", coordinator + "/runs"):
            limited = await client.get(url, params={"limit": 10**30}, headers=admin)
            assert limited.status_code == 422, limited.text
    await healthy_and_working(stack, admin, mongo)


async def test_publish_definition_helper_still_works(stack: Any, admin: dict[str, str]) -> None:
    """The guard leaves ordinary bodies alone (YAML without a content type, JSON)."""
    async with httpx.AsyncClient(timeout=10) as client:
        await publish_definition(client, stack.url("trigger"), ROOT / "examples" / "hello.yaml",
                                 admin)
        as_json = json.dumps({"name": "hello_json", "stages": [
            {"name": "s", "steps": [{"name": "a", "action": "noop"}]}]})
        response = await client.post(f"{stack.url('trigger')}/definitions",
                                     params={"format": "json"}, content=as_json,
                                     headers={**admin, "Content-Type": "application/json"})
        assert response.status_code == 201, response.text
