"""Definitions (validate, publish, list, show) and starting runs, over HTTP.

Validating and publishing are for admins and designers (role ``designer``); the work is
done in a worker thread and bounded (shared/definitions/limits.py), so a large definition
does not stall this process's event loop, which also serves the record-change consumer.
Starting a run checks the definition's ``starters`` and typed ``inputs``.
"""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from contracts.envelope import derived_id, new_event, new_event_id
from contracts.events.commands import RecordRef, StartRun
from contracts.registry import MAX_MESSAGE_BYTES, encode
from services.trigger.subscriptions import Subscriptions
from shared.auth import Authenticator, Principal
from shared.definitions import Definition
from shared.definitions.inputs import input_problems, may_start
from shared.definitions.issues import DefinitionError, Issue
from shared.definitions.loading import load_definition
from shared.definitions.store import DefinitionStore, UnknownDefinition
from shared.definitions.validate import definition_warnings, validate_definition
from shared.messaging import Publisher

PRODUCER = "trigger-api"
MAX_DEFINITION_BYTES = 256 * 1024
MAX_VERSION = 2**31 - 1  # MongoDB holds 64-bit integers; a query with a bigger one is a 500
DESIGNER_ROLE = "designer"
PROBLEM = "application/problem+json"


class StartRunRequest(BaseModel):
    orchestration: str = Field(min_length=1, max_length=200)
    version: int | None = Field(default=None, ge=1, le=MAX_VERSION)
    inputs: dict[str, Any] = Field(default_factory=dict)
    record: RecordRef | None = None


def definitions_router(
    store: DefinitionStore,
    subscriptions: Subscriptions,
    publisher: Publisher,
    auth: Authenticator,
    known_actions: frozenset[str],
    longest_step: timedelta | None = None,
) -> APIRouter:
    router = APIRouter(tags=["definitions", "runs"])
    Reader = Annotated[Principal, Depends(auth.principal)]

    async def designer(request: Request) -> Principal:
        who = await auth.principal(request)
        if not (who.is_admin or DESIGNER_ROLE in who.roles):
            raise HTTPException(403, "validating and publishing definitions needs the admin or"
                                     " designer role")
        return who

    Designer = Annotated[Principal, Depends(designer)]
    # One definition checked at a time: compiling holds the GIL, so more threads at once
    # would only take more turns from the event loop.
    checking = asyncio.Semaphore(1)

    def check(raw: bytes, fmt: str) -> tuple[Definition, list[Issue]]:
        data = load_definition(raw.decode("utf-8", errors="replace"), fmt=fmt)  # type: ignore[arg-type]
        definition = validate_definition(data, known_actions=known_actions,
                                         longest_step=longest_step)
        return definition, definition_warnings(definition)

    async def parse(request: Request, fmt: str) -> tuple[Definition, list[dict[str, str]]]:
        raw = await request.body()
        if len(raw) > MAX_DEFINITION_BYTES:
            raise HTTPException(413, f"a definition is at most {MAX_DEFINITION_BYTES} bytes")
        try:
            async with checking:
                definition, warnings = await asyncio.to_thread(check, raw, fmt)
            return definition, [{"path": w.path, "message": w.message} for w in warnings]
        except DefinitionError as exc:
            raise HTTPException(
                422,
                {
                    "message": "the definition is invalid",
                    "issues": [{"path": i.path, "message": i.message} for i in exc.issues],
                },
            ) from exc

    @router.post("/definitions/validate")
    async def validate(
        request: Request, _: Designer, format: Literal["yaml", "json"] = "yaml"
    ) -> dict[str, Any]:
        definition, warnings = await parse(request, format)
        return {"valid": True, "name": definition.name, "stages": len(definition.stages),
                "warnings": warnings}

    @router.post("/definitions", status_code=201)
    async def publish(
        request: Request, who: Designer, format: Literal["yaml", "json"] = "yaml"
    ) -> dict[str, Any]:
        definition, warnings = await parse(request, format)
        pinned = await store.publish(definition, published_by=who.user_id, now=datetime.now(UTC))
        subscriptions.published(pinned)
        return {"name": pinned.name, "version": pinned.version, "warnings": warnings}

    @router.get("/definitions")
    async def list_definitions(_: Reader) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in doc.items() if k != "_id"} for doc in await store.list()
        ]

    @router.get("/definitions/{name}")
    async def show(
        name: str, _: Reader, version: Annotated[int | None, Query(ge=1, le=MAX_VERSION)] = None
    ) -> dict[str, Any]:
        doc = await store.raw(name, version)
        if doc is None:
            raise HTTPException(404, f"no published orchestration {name!r}")
        doc.pop("_id", None)
        return doc

    @router.post("/runs", status_code=202)
    async def start_run(
        body: Annotated[StartRunRequest, Body()],
        who: Reader,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> JSONResponse:
        """Start a run (202); 403 for who is not a starter, 422 for inputs that do not fit."""
        try:
            definition = await store.get(body.orchestration, body.version)
        except UnknownDefinition as exc:
            raise HTTPException(404, str(exc)) from exc
        if not may_start(definition.starters, who.user_id, who.roles, who.groups):
            return problem(403, "Not a starter of this orchestration",
                           f"{who.user_id!r} may not start {definition.name!r}: its definition"
                           " names who may (starters)")
        problems = input_problems(definition.inputs, body.inputs)
        if problems:
            return problem(422, "Invalid run inputs",
                           "; ".join(f"{name}: {message}" for name, message in problems[:20]),
                           errors=[{"input": n, "message": m} for n, m in problems[:100]])
        key = f"{who.user_id}:{idempotency_key}" if idempotency_key else new_event_id()
        run_id = derived_id("start", key)
        command = StartRun(
            orchestration=definition.name,
            version=definition.version,
            inputs=body.inputs,
            record=body.record,
            requested_by=who.user_id,
            at_most_one_active_per_record=definition.trigger.at_most_one_active_per_record,
        )
        envelope = new_event(
            command, producer=PRODUCER, run_id=run_id, event_id=derived_id(run_id, "start")
        )
        if len(encode(envelope)) > MAX_MESSAGE_BYTES:  # Kafka would refuse it: a 500
            raise HTTPException(413, f"the inputs make a message over {MAX_MESSAGE_BYTES} bytes")
        await publisher.publish([envelope])
        return JSONResponse(
            {"run_id": run_id, "orchestration": definition.name, "version": definition.version},
            status_code=202,
        )

    return router


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem details answer."""
    return JSONResponse({"type": "about:blank", "title": title, "status": status,
                         "detail": detail, **extra}, status_code=status, media_type=PROBLEM)
