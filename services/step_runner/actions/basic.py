"""Small built-in actions: noop, set_variables, publish_record_update."""

from __future__ import annotations

from typing import Any

from contracts.events.records import RecordUpdateRequested
from services.step_runner.actions import ActionContext, ActionResult, FatalError


class Noop:
    async def run(self, inputs: dict[str, Any], context: ActionContext) -> ActionResult:
        return ActionResult(outputs=dict(inputs))


class SetVariables:
    """Its inputs (templated by the coordinator) become run variables."""

    async def run(self, inputs: dict[str, Any], context: ActionContext) -> ActionResult:
        return ActionResult(outputs=dict(inputs))


class PublishRecordUpdate:
    """Asks the owning system to update a record: a message on records.updates."""

    async def run(self, inputs: dict[str, Any], context: ActionContext) -> ActionResult:
        try:
            message = RecordUpdateRequested(
                object_type=str(inputs["object_type"]),
                record_id=str(inputs["record_id"]),
                fields=dict(inputs.get("fields", {})),
                step=context.step,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FatalError(f"publish_record_update needs object_type, record_id, fields: {exc}") from exc
        return ActionResult(outputs={"published": True}, messages=[message])


class Wait:
    """Waits are timers kept by the coordinator; a dispatched wait is a definition error."""

    async def run(self, inputs: dict[str, Any], context: ActionContext) -> ActionResult:
        raise FatalError("wait steps are handled by the stage-coordinator's timers")
