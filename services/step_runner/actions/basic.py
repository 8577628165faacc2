"""Small built-in actions: noop, set_variables, publish_record_update."""

from __future__ import annotations

from typing import Any

from contracts.events.records import RecordUpdateRequested
from services.step_runner.actions import ActionContext, ActionResult, FatalError


class Noop:
    replayable = True

    async def run(self, inputs: dict[str, Any], context: ActionContext) -> ActionResult:
        return ActionResult(outputs=dict(inputs))


class SetVariables:
    """Its inputs (templated by the coordinator) become run variables."""

    replayable = True

    async def run(self, inputs: dict[str, Any], context: ActionContext) -> ActionResult:
        return ActionResult(outputs=dict(inputs))


class PublishRecordUpdate:
    """Asks the owning system to update a record: a message on records.updates.

    inputs: ``fields`` (a map), and ``object_type`` / ``record_id``, which default to the
    record the run is about (as in ``fields: {status: Approved}``), which its dispatch
    carries.  Replayable: a second run publishes the same request with the same event id.
    """

    replayable = True

    async def run(self, inputs: dict[str, Any], context: ActionContext) -> ActionResult:
        object_type, record_id = inputs.get("object_type"), inputs.get("record_id")
        if (object_type is None or record_id is None) and context.record_key:
            own_type, _, own_id = context.record_key.partition(":")
            object_type = own_type if object_type is None else object_type
            record_id = own_id if record_id is None else record_id
        if object_type is None or record_id is None:
            raise FatalError(
                "publish_record_update needs object_type and record_id when the run is not"
                " about a record"
            )
        try:
            message = RecordUpdateRequested(
                object_type=str(object_type),
                record_id=str(record_id),
                fields=dict(inputs.get("fields", {})),
                step=context.step,
            )
        except (TypeError, ValueError) as exc:
            raise FatalError(f"publish_record_update needs a map of fields: {exc}") from exc
        return ActionResult(outputs={"published": True}, messages=[message])


class Wait:
    """Waits are timers kept by the coordinator; a dispatched wait is a definition error."""

    replayable = True

    async def run(self, inputs: dict[str, Any], context: ActionContext) -> ActionResult:
        raise FatalError("wait steps are handled by the stage-coordinator's timers")
