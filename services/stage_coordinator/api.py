"""The runs API: list and show runs (with their history, from ``run_history``), and run control.

Admins and operators see every run and steer runs; anyone else sees the runs they take
part in (``Run.participants``, see core/participants.py) and gets the same 404 for any
other run as for one that does not exist, so run ids cannot be probed.
"""


from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field
from pymongo.asynchronous.collection import AsyncCollection

from contracts.envelope import new_event
from contracts.events import commands as cmd
from contracts.registry import MAX_MESSAGE_BYTES, encode
from services.stage_coordinator import listing
from services.stage_coordinator.history import read_history
from services.stage_coordinator.store import unpacked
from shared.auth import Authenticator, Principal
from shared.messaging import Publisher

PRODUCER = "stage-coordinator-api"


class ControlRequest(BaseModel):
    reason: str = Field(default="", max_length=2000)
    step: str | None = Field(default=None, max_length=100)
    outputs: dict[str, Any] = Field(default_factory=dict)
    to_version: int | None = Field(default=None, ge=1, le=2**31 - 1)


def runs_router(
    runs: AsyncCollection[dict[str, Any]], history: AsyncCollection[dict[str, Any]],
    publisher: Publisher, auth: Authenticator,
) -> APIRouter:
    router = APIRouter(prefix="/runs", tags=["runs"])
    Reader = Annotated[Principal, Depends(auth.principal)]
    Operator = Annotated[Principal, Depends(auth.operator)]

    @router.get("")
    async def list_runs(
        who: Reader,
        orchestration: str | None = None,
        status: str | None = None,
        record_key: str | None = None,
        limit: int = Query(50, ge=1, le=500),
    ) -> list[dict[str, Any]]:
        query: dict[str, Any] = visible_to(who)
        if orchestration:
            query["orchestration"] = orchestration
        if status:
            query["status"] = status
        if record_key:
            query["record_key"] = record_key
        return [_public(doc) for doc in await listing.list_runs(runs, history, query, limit)]

    @router.get("/{run_id}")
    async def show_run(run_id: str, who: Reader) -> dict[str, Any]:
        found = await runs.find_one({"_id": run_id, **visible_to(who)},
                                    {"outbox": 0, "applied": 0, "active_steps.dispatch": 0})
        if found is None:
            raise HTTPException(404, f"no run {run_id}")
        doc = unpacked(found)
        doc.pop("applied", None)
        doc["history"] = await read_history(history, doc)
        doc.pop("pending_history", None)
        return _public(doc)

    @router.post("/{run_id}/{action}", status_code=202)
    async def control(
        run_id: str,
        action: Literal["cancel", "suspend", "resume", "retry", "skip", "migrate"],
        body: ControlRequest,
        who: Operator,
        request: Request,
    ) -> dict[str, Any]:
        if await runs.count_documents({"_id": run_id}, limit=1) == 0:
            raise HTTPException(404, f"no run {run_id}")
        payload = _command(action, body, who.user_id)
        envelope = new_event(payload, producer=PRODUCER, run_id=run_id)
        if len(encode(envelope)) > MAX_MESSAGE_BYTES:  # Kafka would refuse it: a 500
            raise HTTPException(413, f"the outputs make a message over {MAX_MESSAGE_BYTES} bytes")
        await publisher.publish([envelope])
        return {"accepted": action, "run_id": run_id, "command_id": envelope.event_id}

    return router


def visible_to(who: Principal) -> dict[str, Any]:
    """The runs ``who`` may see, as a query: every run, or the ones they take part in.

    One clause on an indexed field: a top-level ``$or`` (with ``started_by``, say) would
    make the embedded MongoDB scan every run (decision 8).  The starter is a participant.
    """
    if who.sees_every_run:
        return {}
    return {"participants": {"$in": who.participant_keys}}


def _command(action: str, body: ControlRequest, actor: str) -> cmd.RunControl:
    common = {"requested_by": actor, "reason": body.reason}
    if action in ("retry", "skip") and not body.step:
        raise HTTPException(422, f"{action} needs the 'step' to {action}")
    if action == "migrate" and not body.to_version:
        raise HTTPException(422, "migrate needs 'to_version'")
    match action:
        case "cancel":
            return cmd.CancelRun(**common)
        case "suspend":
            return cmd.SuspendRun(**common)
        case "resume":
            return cmd.ResumeRun(**common)
        case "retry":
            return cmd.RetryStep(step=str(body.step), **common)
        case "skip":
            return cmd.SkipStep(step=str(body.step), outputs=body.outputs, **common)
        case _:
            return cmd.MigrateRun(to_version=int(body.to_version or 0), **common)


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    doc["id"] = doc.pop("_id")
    for key in ("timer_lease_until", "outbox_at", "outbox_by", "active_key", "lookup"):
        doc.pop(key, None)
    return doc
