"""Definitions (validate, publish, list, show) and starting runs, over HTTP."""


from datetime import UTC, datetime
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
from shared.definitions.issues import DefinitionError
from shared.definitions.loading import load_definition
from shared.definitions.store import DefinitionStore, UnknownDefinition
from shared.definitions.validate import validate_definition
from shared.messaging import Publisher

PRODUCER = "trigger-api"
MAX_DEFINITION_BYTES = 256 * 1024
MAX_VERSION = 2**31 - 1  # MongoDB holds 64-bit integers; a query with a bigger one is a 500


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
) -> APIRouter:
    router = APIRouter(tags=["definitions", "runs"])
    Reader = Annotated[Principal, Depends(auth.principal)]
    Admin = Annotated[Principal, Depends(auth.admin)]

    async def parse(request: Request, fmt: str) -> Definition:
        raw = await request.body()
        if len(raw) > MAX_DEFINITION_BYTES:
            raise HTTPException(413, f"a definition is at most {MAX_DEFINITION_BYTES} bytes")
        try:
            data = load_definition(raw.decode("utf-8", errors="replace"), fmt=fmt)  # type: ignore[arg-type]
            return validate_definition(data, known_actions=known_actions)
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
        request: Request, _: Reader, format: Literal["yaml", "json"] = "yaml"
    ) -> dict[str, Any]:
        definition = await parse(request, format)
        return {"valid": True, "name": definition.name, "stages": len(definition.stages)}

    @router.post("/definitions", status_code=201)
    async def publish(
        request: Request, who: Admin, format: Literal["yaml", "json"] = "yaml"
    ) -> dict[str, Any]:
        definition = await parse(request, format)
        pinned = await store.publish(definition, published_by=who.user_id, now=datetime.now(UTC))
        subscriptions.published(pinned)
        return {"name": pinned.name, "version": pinned.version}

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
        try:
            definition = await store.get(body.orchestration, body.version)
        except UnknownDefinition as exc:
            raise HTTPException(404, str(exc)) from exc
        missing = [n for n, s in definition.inputs.items() if s.required and n not in body.inputs]
        if missing:
            raise HTTPException(422, f"missing required inputs: {', '.join(missing)}")
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
