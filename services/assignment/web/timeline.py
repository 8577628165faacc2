"""A run's timeline for people: its stages and steps, who holds the ball, and the path taken.

Built from the run as the stage-coordinator's API returns it (``GET /runs/{id}``: the run
with ``stages``, ``steps`` and ``history``, times as ISO 8601 text) and from the run's
work items, which the assignment service owns.  Pure: the caller passes ``now``.

The path lists what happened in order.  Entering a stage that comes before the one the
run was in (or the same one again) is a route back: a decision sent the run there.  It is
marked, with the decision that came just before.  Moving on to a later stage is never a
route back, even into a stage visited before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.assignment.core.directory import Directory
from services.assignment.core.workitem import WorkItem
from shared.times import when

HUMAN_KINDS = frozenset({"interactive", "approval"})
ACTIVE_STEPS = frozenset({"in_progress", "waiting_retry"})
HOLDER_FIELDS = frozenset({"assignee", "assignee_kind", "claimed_by", "delegated_to"})


@dataclass(frozen=True)
class Holder:
    """Who a step is waiting for now, and since when."""

    stage: str
    step: str
    who: str
    since: datetime | None
    seconds: float | None
    work_item_id: str | None = None  # set when the viewer may open the item


@dataclass
class StepRow:
    name: str
    kind: str
    status: str
    attempt: int
    started_at: datetime | None
    finished_at: datetime | None
    seconds: float | None
    completed_by: str | None = None
    decision: str | None = None
    comment: str | None = None
    error: str | None = None
    holder: Holder | None = None


@dataclass
class StageRow:
    name: str
    status: str
    visits: int
    started_at: datetime | None
    finished_at: datetime | None
    seconds: float | None
    current: bool
    steps: list[StepRow] = field(default_factory=list)


@dataclass(frozen=True)
class PathEntry:
    at: datetime | None
    kind: str  # run, stage, back, step, decision, failure
    text: str
    actor: str = ""
    seconds: float | None = None


@dataclass
class Timeline:
    run_id: str
    orchestration: str
    version: int
    status: str
    stage: str | None
    record: Mapping[str, Any]
    started_at: datetime | None
    finished_at: datetime | None
    seconds: float | None
    error: str | None
    stages: list[StageRow]
    holders: list[Holder]
    path: list[PathEntry]

    @property
    def routed_back(self) -> bool:
        return any(entry.kind == "back" for entry in self.path)


def span(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def duration_text(seconds: float | None) -> str:
    """``3d 4h``, ``2h 5m``, ``4m 10s``, ``12s``; an em dash when unknown."""
    if seconds is None:
        return "—"
    whole = int(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    if whole == 0 and seconds > 0:
        return "<1s"
    return f"{secs}s"


def person(directory: Directory, user_id: str | None) -> str:
    """A user's name from the directory (their id when unknown)."""
    if not user_id:
        return ""
    user = directory.users.get(user_id)
    return user.name if user and user.name and user.name != user_id else user_id


def pool_name(directory: Directory, kind: str, pool_id: str) -> str:
    pools: Mapping[str, Any] = directory.groups if kind == "group" else directory.queues
    pool = pools.get(pool_id)
    name = pool.name if pool is not None and pool.name else pool_id
    return f"the {name} {kind}"


def holder_text(item: WorkItem, directory: Directory) -> str:
    """Whom the item is with: its claimer, its delegate, its user, or its pool."""
    if item.claimed_by:
        text = f"{person(directory, item.claimed_by)} (claimed)"
    elif item.assignee_kind in ("group", "queue"):
        text = pool_name(directory, item.assignee_kind, item.assignee)
    else:
        text = person(directory, item.assignee) or item.assignee
    if item.delegated_to:
        text += f", delegated to {person(directory, item.delegated_to)}"
    return text


def held_since(item: WorkItem) -> datetime:
    """When the ball last moved to whoever holds the item now."""
    moved = [entry.at for entry in item.history if entry.field in HOLDER_FIELDS]
    return when(moved[-1] if moved else item.created_at) or item.created_at


def build(
    run: Mapping[str, Any],
    items: Sequence[WorkItem],
    directory: Directory,
    *,
    now: datetime,
    visible: Iterable[str] = (),
) -> Timeline:
    """The timeline of ``run`` with the holders taken from its work ``items``.

    ``visible`` lists the ids of the work items the viewer may open (they are linked).
    """
    can_open = set(visible)
    status = str(run.get("status", ""))
    active_run = status in ("running", "suspended", "error")
    open_items = {i.step: i for i in sorted(items, key=lambda i: i.attempt)
                  if i.status in ("open", "claimed")}
    history: list[Mapping[str, Any]] = [h for h in run.get("history") or []
                                        if isinstance(h, Mapping)]
    order = _stage_order(run, history)
    steps_doc: Mapping[str, Any] = run.get("steps") or {}
    stages_doc: Mapping[str, Any] = run.get("stages") or {}

    holders: list[Holder] = []
    stages: list[StageRow] = []
    for name in order:
        doc = stages_doc.get(name) or {}
        started, finished = when(doc.get("started_at")), when(doc.get("finished_at"))
        stage_status = str(doc.get("status", "pending"))
        row = StageRow(
            name=name, status=stage_status, visits=int(doc.get("visits") or 0),
            started_at=started, finished_at=finished,
            seconds=span(started, finished or (now if stage_status == "in_progress" else None)),
            current=run.get("stage") == name and active_run,
        )
        for step_name, step in steps_doc.items():
            if not isinstance(step, Mapping) or step.get("stage") != name:
                continue
            step_row = _step_row(str(step_name), step, now)
            if active_run and step_row.status in ACTIVE_STEPS:
                step_row.holder = _holder(name, step_row, open_items.get(step_row.name),
                                          directory, now, can_open)
                holders.append(step_row.holder)
            row.steps.append(step_row)
        stages.append(row)

    started_at, finished_at = when(run.get("created_at")), when(run.get("finished_at"))
    return Timeline(
        run_id=str(run.get("id", "")), orchestration=str(run.get("orchestration", "")),
        version=int(run.get("version") or 0), status=status, stage=run.get("stage"),
        record=_record_fields(run.get("record")), started_at=started_at,
        finished_at=finished_at,
        seconds=span(started_at, finished_at or (now if active_run else None)),
        error=run.get("error"), stages=stages, holders=holders,
        path=path_of(history, directory, order),
    )


def path_of(history: Sequence[Mapping[str, Any]], directory: Directory,
            order: Sequence[str] | None = None) -> list[PathEntry]:
    """What happened, in order, in words; timers and resets are left out.

    ``order`` is the definition's stage order (by default, as RunCreated lists it).
    """
    position = {name: i for i, name in enumerate(
        order if order is not None else _stage_order({}, history))}
    current: str | None = None
    path: list[PathEntry] = []
    entered: dict[str, int] = {}
    stage_start: dict[str, datetime | None] = {}
    step_start: dict[str, datetime | None] = {}
    last_decision = ""
    for event in history:
        kind, at = str(event.get("kind", "")), when(event.get("at"))
        actor = str(event.get("actor") or "")
        stage, step = str(event.get("stage", "")), str(event.get("step", ""))
        if kind == "RunCreated":
            path.append(PathEntry(at, "run", f"Run of {event.get('orchestration')} "
                                  f"v{event.get('version')} started", actor))
        elif kind == "StageEntered":
            entered[stage] = entered.get(stage, 0) + 1
            stage_start[stage] = at
            visit = f" (visit {entered[stage]})" if entered[stage] > 1 else ""
            if current is not None and _before_or_same(position, stage, current):
                why = f" after {last_decision}" if last_decision else ""
                path.append(PathEntry(at, "back", f"Back to stage {stage}{why}{visit}", actor))
            else:
                path.append(PathEntry(at, "stage", f"Stage {stage} entered{visit}", actor))
            current, last_decision = stage, ""  # a later route back has its own reason
        elif kind == "StageFinished":
            path.append(PathEntry(at, "stage", f"Stage {stage} {event.get('status')}", actor,
                                  span(stage_start.get(stage), at)))
        elif kind == "StageSkipped":
            path.append(PathEntry(at, "stage", f"Stage {stage} skipped", actor))
        elif kind == "StepStarted":
            step_start[step] = at
            attempt = int(event.get("attempt") or 1)
            again = f" (attempt {attempt})" if attempt > 1 else ""
            path.append(PathEntry(at, "step", f"Step {step} started{again}", actor))
        elif kind == "StepSucceeded":
            decision = event.get("decision")
            who = person(directory, actor) if actor and actor != "system" else ""
            text = f"Step {step} {decision or 'completed'}" + (f" by {who}" if who else "")
            if event.get("comment"):
                text += f": “{event.get('comment')}”"
            if decision:
                last_decision = f"{step} was {decision}"
            path.append(PathEntry(at, "decision" if decision else "step", text, actor,
                                  span(step_start.get(step), at)))
        elif kind in ("StepFailed", "StepRetryScheduled"):
            verb = "failed" if kind == "StepFailed" else "will be retried"
            path.append(PathEntry(at, "failure", f"Step {step} {verb}: {event.get('error')}",
                                  actor, span(step_start.get(step), at)))
        elif kind in ("StepSkipped", "StepCanceled"):
            verb = "skipped" if kind == "StepSkipped" else "canceled"
            reason = f": {event.get('reason')}" if event.get("reason") else ""
            path.append(PathEntry(at, "step", f"Step {step} {verb}{reason}", actor))
        elif kind == "RunStatusChanged":
            reason = f": {event.get('reason')}" if event.get("reason") else ""
            path.append(PathEntry(at, "run", f"Run {event.get('status')}{reason}", actor))
        elif kind == "RunMigrated":
            path.append(PathEntry(at, "run", f"Run migrated from v{event.get('from_version')} "
                                  f"to v{event.get('to_version')}", actor))
    return path


def _before_or_same(position: Mapping[str, int], stage: str, current: str) -> bool:
    """Whether entering ``stage`` from ``current`` goes back (unknown stages: never)."""
    if stage not in position or current not in position:
        return False
    return position[stage] <= position[current]


def _stage_order(run: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> list[str]:
    """The definition's order (RunCreated lists it), then any stage added later."""
    order: list[str] = []
    for event in history:
        if event.get("kind") == "RunCreated":
            order = [str(s) for s in event.get("stages") or []]
            break
    for name in run.get("stages") or {}:
        if name not in order:
            order.append(str(name))
    return order


def _step_row(name: str, step: Mapping[str, Any], now: datetime) -> StepRow:
    started, finished = when(step.get("started_at")), when(step.get("finished_at"))
    status = str(step.get("status", "pending"))
    return StepRow(
        name=name, kind=str(step.get("kind", "")), status=status,
        attempt=int(step.get("attempt") or 0), started_at=started, finished_at=finished,
        seconds=span(started, finished or (now if status in ACTIVE_STEPS else None)),
        completed_by=step.get("completed_by"), decision=step.get("decision"),
        comment=step.get("comment"), error=step.get("error"),
    )


def _holder(stage: str, step: StepRow, item: WorkItem | None, directory: Directory,
            now: datetime, can_open: set[str]) -> Holder:
    if step.kind in HUMAN_KINDS and item is not None:
        since = held_since(item)
        return Holder(stage, step.name, holder_text(item, directory), since, span(since, now),
                      item.id if item.id in can_open else None)
    if step.kind in HUMAN_KINDS:
        who = "nobody yet: the work item is being created"
    elif step.status == "waiting_retry":
        who = "Baton (automatic step, waiting to retry)"
    else:
        who = "Baton (automatic step)"
    return Holder(stage, step.name, who, step.started_at, span(step.started_at, now))


def _record_fields(record: Any) -> Mapping[str, Any]:
    if not isinstance(record, Mapping):
        return {}
    fields = record.get("fields")
    return fields if isinstance(fields, Mapping) else record
