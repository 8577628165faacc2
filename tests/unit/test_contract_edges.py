"""What every consumer refuses at the edge (and so dead-letters with the reason): times
without a zone, and messages about a run that name no run."""

from __future__ import annotations

import importlib
import json
import typing
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from contracts import ContractError, Envelope, generate, parse
from contracts.registry import REGISTRY, RUN_TOPICS

ENTRIES = sorted(REGISTRY)


def load_sample(type_: str, version: int) -> dict[str, Any]:
    path = generate.SAMPLES_DIR / f"{generate.name_of(type_, version)}.json"
    return dict(json.loads(path.read_text(encoding="utf-8")))


def moments(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Paths of every string in ``node`` that reads as a date-time with a zone."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from moments(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from moments(value, (*path, index))
    elif isinstance(node, str) and "T" in node:
        try:
            parsed = datetime.fromisoformat(node)
        except ValueError:
            return
        if parsed.tzinfo is not None:
            yield path


def zone_less(data: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    copy = json.loads(json.dumps(data))
    node = copy
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = datetime.fromisoformat(node[path[-1]]).replace(tzinfo=None).isoformat()
    return copy


CASES = [(key, path) for key in ENTRIES for path in moments(load_sample(*key))
         if path[:2] not in (("payload", "record"), ("payload", "inputs"), ("payload", "new"))]


def test_the_samples_hold_the_contract_times() -> None:
    fields = {path[-1] for _, path in CASES}
    assert {"occurred_at", "due_at"} <= fields


@pytest.mark.parametrize(("key", "path"), CASES, ids=lambda v: ".".join(map(str, v)))
def test_a_time_without_a_zone_is_refused_wherever_the_contracts_hold_one(
        key: tuple[str, int], path: tuple[Any, ...]) -> None:
    """Regression: a zone-less occurred_at started a run whose completion then failed
    comparing naive and aware times (dead-lettered, the step in progress forever)."""
    raw = json.dumps(zone_less(load_sample(*key), path)).encode()
    with pytest.raises(ContractError, match="timezone"):
        parse(raw)


@pytest.mark.parametrize("key", ENTRIES, ids=lambda k: f"{k[0]}.v{k[1]}")
def test_a_message_about_a_run_without_its_run_id_is_refused(key: tuple[str, int]) -> None:
    """Regression: a WorkItemRequested without run id opened an orphan item in a queue."""
    sample = {**load_sample(*key), "run_id": None}
    if REGISTRY[key].TOPIC in RUN_TOPICS:
        with pytest.raises(ContractError, match="has no run_id"):
            parse(json.dumps(sample).encode())
    else:
        assert parse(json.dumps(sample).encode()).run_id is None


ROOT = generate.SAMPLES_DIR.parents[1]


def test_times_read_back_from_mongodb_carry_their_zone() -> None:
    """PyMongo returns naive datetimes unless asked: one compared with an aware one is a
    TypeError in the middle of a run.  Every service's client comes from make_client."""
    from shared.mongo import make_client

    client = make_client("mongodb://127.0.0.1:1/?connect=false", app_name="test")
    assert client.codec_options.tz_aware is True
    elsewhere = [path.relative_to(ROOT).as_posix()
                 for folder in ("services", "shared", "cli")
                 for path in (ROOT / folder).rglob("*.py")
                 if "MongoClient(" in path.read_text(encoding="utf-8")]
    assert elsewhere == ["shared/mongo.py"]


API_MODULES = ("services.assignment.api", "services.trigger.api", "services.stage_coordinator.api",
               "services.stage_coordinator.stats_api", "services.notification.api")


def models_taking_input() -> list[type[BaseModel]]:
    """Every contract payload and envelope, and every request model of the HTTP APIs."""
    found: list[type[BaseModel]] = [Envelope, *REGISTRY.values()]
    for name in API_MODULES:
        module = importlib.import_module(name)
        found += [value for value in vars(module).values() if isinstance(value, type)
                  and issubclass(value, BaseModel) and value.__module__ == name]
    return found


def time_fields(model: type[BaseModel],
                seen: set[type] | None = None) -> Iterator[tuple[type[BaseModel], str]]:
    """The fields (of nested models too) whose type mentions datetime."""
    seen = seen if seen is not None else set()
    if model in seen:
        return
    seen.add(model)
    for name, info in model.model_fields.items():
        if "datetime" in repr(info.annotation).lower():
            yield model, name
        for inner in typing.get_args(info.annotation) or (info.annotation,):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                yield from time_fields(inner, seen)


def test_no_contract_or_request_field_takes_a_zone_less_time() -> None:
    """The class of the zone-less occurred_at: any datetime taken in must carry its zone."""
    naive = datetime(2026, 11, 30, 9, 0)
    checked = set()
    for model in models_taking_input():
        for owner, name in time_fields(model):
            adapter = TypeAdapter(owner.model_fields[name].annotation)
            with pytest.raises(ValidationError, match="timezone"):
                adapter.validate_python(naive)
            checked.add(f"{owner.__name__}.{name}")
    assert {"Envelope.occurred_at", "WorkItemRequested.due_at",
            "WorkItemAssigned.due_at"} <= checked
