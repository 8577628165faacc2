"""baton runs start (trigger) | list | show | cancel | suspend | resume | retry | skip | migrate
(stage-coordinator)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.client import HttpError, ServiceClient, seg
from cli.errors import CliError, UsageError
from cli.output import (
    echo_json,
    echo_table,
    fmt_time,
    fmt_value,
    render_fields,
    render_table,
    truncate,
)
from cli.session import session
from cli.values import load_mapping, merged, parse_pairs

app = typer.Typer(help="Start runs, follow them and steer them.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")]
RunArg = Annotated[str, typer.Argument(help="The run id.", show_default=False)]
StepArg = Annotated[str, typer.Argument(help="The step's name.", show_default=False)]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (kept in the run's history).")]
TERMINAL = frozenset({"completed", "error", "canceled"})
SUMMARY_WIDTH = 80


class RunStatus(StrEnum):
    running = "running"
    suspended = "suspended"
    error = "error"
    completed = "completed"
    canceled = "canceled"


def _compact(value: Any, width: int = SUMMARY_WIDTH) -> str:
    text = json.dumps(value, separators=(",", ":"), default=str, ensure_ascii=False)
    return truncate(text, width)


def _step_changes(entry: Mapping[str, Any]) -> str:
    parts = []
    if entry.get("decision"):
        parts.append(f"decision {entry['decision']}")
    if entry.get("comment"):
        parts.append(f"comment {entry['comment']!r}")
    if entry.get("outputs"):
        parts.append(f"outputs {_compact(entry['outputs'])}")
    return ": " + ", ".join(parts) if parts else ""


def describe_event(entry: Mapping[str, Any]) -> str:
    """What one history entry changed, in a few words."""
    kind = str(entry.get("kind", "?"))
    step = entry.get("step")
    stage = entry.get("stage")
    raw_timer = entry.get("timer")
    timer: dict[str, Any] = raw_timer if isinstance(raw_timer, dict) else {}
    match kind:
        case "RunCreated":
            inputs = entry.get("inputs") or {}
            text = f"run of {entry.get('orchestration')} v{entry.get('version')} created"
            if entry.get("record_key"):
                text += f" for {entry['record_key']}"
            return text + (f" with inputs {_compact(inputs)}" if inputs else "")
        case "StageEntered":
            return f"stage {stage} entered"
        case "StageSkipped":
            return f"stage {stage} skipped (its entry condition is false)"
        case "StageFinished":
            return f"stage {stage} {entry.get('status', 'finished')}"
        case "StepStarted":
            attempt = entry.get("attempt")
            return f"step {step} started" + (f" (attempt {attempt})" if attempt else "")
        case "StepSucceeded":
            return f"step {step} completed{_step_changes(entry)}"
        case "StepRetryScheduled":
            return (f"step {step} failed: {entry.get('error')}; "
                    f"retry at {fmt_time(timer.get('due_at'))}")
        case "StepFailed":
            return f"step {step} failed: {entry.get('error')}"
        case "StepSkipped":
            outputs = entry.get("outputs")
            return (f"step {step} skipped: {entry.get('reason')}"
                    + (f", outputs {_compact(outputs)}" if outputs else ""))
        case "StepCanceled":
            return f"step {step} canceled: {entry.get('reason')}"
        case "StepReset":
            return f"step {step} reset to pending"
        case "TimerScheduled":
            about = f" for step {timer['step']}" if timer.get("step") else ""
            return f"{timer.get('purpose', '')} timer{about} due {fmt_time(timer.get('due_at'))}"
        case "TimerCleared":
            return f"timer {entry.get('timer_id')} cleared"
        case "RunStatusChanged":
            reason = f": {entry['reason']}" if entry.get("reason") else ""
            return f"run {entry.get('status')}{reason}"
        case "RunMigrated":
            text = f"migrated from v{entry.get('from_version')} to v{entry.get('to_version')}"
            added = [s[1] if isinstance(s, list | tuple) and len(s) > 1 else s
                     for s in entry.get("added_steps") or []]
            if added:
                text += f", added steps {fmt_value(added)}"
            if entry.get("removed_steps"):
                text += f", removed steps {fmt_value(entry['removed_steps'])}"
            return text
        case "ParticipantsJoined":
            return f"now taking part: {', '.join(map(str, entry.get('participants') or []))}"
        case _:
            rest = {k: v for k, v in entry.items() if k not in ("kind", "at", "actor")}
            return _compact(rest) if rest else ""


def timeline_rows(history: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    return [[fmt_time(e.get("at")), str(e.get("actor") or "system"), str(e.get("kind", "?")),
             describe_event(e)] for e in history]


def describe_run(run: Mapping[str, Any]) -> str:
    """The run's header, its stages and steps now, its timers, and its history as a timeline."""
    fields: list[tuple[str, Any]] = [
        ("run", run.get("id")),
        ("orchestration", f"{run.get('orchestration')} v{run.get('version')}"),
        ("status", run.get("status")),
        ("current stage", run.get("stage")),
    ]
    if run.get("record_key"):
        fields.append(("record", run["record_key"]))
    fields += [("started by", run.get("started_by")), ("created", fmt_time(run.get("created_at"))),
               ("updated", fmt_time(run.get("updated_at")))]
    if run.get("finished_at"):
        fields.append(("finished", fmt_time(run.get("finished_at"))))
    if run.get("error"):
        fields.append(("error", run["error"]))
    if run.get("vars"):
        fields.append(("variables", _compact(run["vars"], 200)))
    parts = [render_fields(fields)]

    stages = run.get("stages") or {}
    if stages:
        rows = [[name, s.get("status"), s.get("visits", 0), fmt_time(s.get("started_at")),
                 fmt_time(s.get("finished_at"))] for name, s in stages.items()]
        parts.append("\nstages\n" + render_table(
            ["stage", "status", "visits", "started", "finished"], rows))
    steps = run.get("steps") or {}
    if steps:
        rows = []
        for name, s in steps.items():
            note = s.get("error") or ""
            if not note and s.get("decision"):
                note = f"decision {s['decision']}"
            if not note and s.get("outputs"):
                note = _compact(s["outputs"], 50)
            rows.append([s.get("stage"), name, s.get("kind"), s.get("status"), s.get("attempt", 0),
                         s.get("completed_by"), fmt_time(s.get("finished_at")), note])
        parts.append("\nsteps\n" + render_table(
            ["stage", "step", "kind", "status", "attempt", "by", "finished", "note"], rows))
    timers = run.get("timers") or []
    if timers:
        rows = [[t.get("purpose"), t.get("step"), fmt_time(t.get("due_at"))] for t in timers]
        parts.append("\ntimers\n" + render_table(["purpose", "step", "due"], rows))
    history = run.get("history") or []
    parts.append("\nhistory\n" + (render_table(["time", "actor", "event", "what changed"],
                                               timeline_rows(history), max_cell=120)
                                  if history else "(no history yet)"))
    return "\n".join(parts)


def _wait_for_end(client: ServiceClient, run_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    run: dict[str, Any] = {}
    while True:
        try:
            run = client.get(f"/runs/{seg(run_id)}")
        except HttpError as exc:
            if exc.status != 404:  # the coordinator may not have created it yet
                raise
        if run.get("status") in TERMINAL:
            return run
        if time.monotonic() > deadline:
            status = run.get("status", "not created yet")
            raise CliError(f"run {run_id} is still {status} after {timeout:g}s",
                           [f"follow it with: baton runs show {run_id}"])
        time.sleep(0.3)


def record_ref(file: Path | None, pairs: Sequence[str], object_type: str | None,
               record_id: str | None) -> dict[str, Any] | None:
    """The record a run starts about, as the start API takes it; None when none is given."""
    if file is None and not pairs and object_type is None and record_id is None:
        return None
    given = load_mapping(file) if file is not None else {}
    whole = isinstance(given.get("fields"), Mapping) and set(given) <= {
        "object_type", "record_id", "fields"}
    fields = dict(given["fields"]) if whole else given
    fields.update(parse_pairs(pairs, "--field"))
    kind = object_type or (given.get("object_type") if whole else None)
    key = record_id or (given.get("record_id") if whole else None)
    missing = [flag for flag, value in (("--object-type", kind), ("--record-id", key))
               if not value]
    if missing:
        raise UsageError(f"a run about a record needs {' and '.join(missing)} (or a --record "
                         "file with object_type and record_id)")
    return {"object_type": str(kind), "record_id": str(key), "fields": fields}


@app.command()
def start(
    ctx: typer.Context,
    orchestration: Annotated[str, typer.Argument(help="The orchestration to run.")],
    input_: Annotated[list[str] | None, typer.Option(
        "--input", "-i", metavar="KEY=VALUE",
        help="An input as key=value (JSON values are parsed); repeatable.")] = None,
    inputs: Annotated[Path | None, typer.Option(
        "--inputs", help="A JSON or YAML file of inputs (--input overrides it).")] = None,
    version: Annotated[int | None, typer.Option(
        "--version", min=1, help="The version to run (default: the latest).")] = None,
    idempotency_key: Annotated[str | None, typer.Option(
        "--idempotency-key", help="Starting twice with the same key starts one run.")] = None,
    wait: Annotated[bool, typer.Option(
        "--wait", help="Wait until the run completes, fails or is canceled.")] = False,
    timeout: Annotated[float, typer.Option(
        "--timeout", min=0.0, help="How long --wait waits, in seconds.")] = 60.0,
    object_type: Annotated[str | None, typer.Option(
        "--object-type", help="The record's type (Employee), for a run about a record.")] = None,
    record_id: Annotated[str | None, typer.Option(
        "--record-id", help="The record's id (e1002).")] = None,
    field: Annotated[list[str] | None, typer.Option(
        "--field", "-f", metavar="KEY=VALUE",
        help="A field of the record as key=value (JSON values are parsed); repeatable.")
    ] = None,
    record: Annotated[Path | None, typer.Option(
        "--record", help="A JSON or YAML file: the record's fields, or {object_type, "
                         "record_id, fields} (the flags above override it).")] = None,
    json_: JsonFlag = False,
) -> None:
    """Start a run of an orchestration, optionally about a record."""
    s = session(ctx)
    body: dict[str, Any] = {"orchestration": orchestration,
                            "inputs": merged(inputs, input_ or [], "--input")}
    if version is not None:
        body["version"] = version
    about = record_ref(record, field or [], object_type, record_id)
    if about is not None:
        body["record"] = about
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    with s.client("trigger") as client:
        answer = client.post("/runs", body, headers=headers)
    run_id = str(answer.get("run_id"))
    if not wait:
        if json_:
            echo_json(answer)
        else:
            typer.echo(f"started run {run_id} of {answer.get('orchestration')} "
                       f"v{answer.get('version')}")
        return
    if not json_:
        typer.echo(f"started run {run_id} of {answer.get('orchestration')} "
                   f"v{answer.get('version')}; waiting for it to finish")
    with s.client("stage-coordinator") as client:
        run = _wait_for_end(client, run_id, timeout)
    if json_:
        echo_json(run)
    else:
        typer.echo(f"run {run_id} {run.get('status')}"
                   + (f": {run['error']}" if run.get("error") else ""))
    if run.get("status") != "completed":
        raise typer.Exit(1)


@app.command("list")
def list_(
    ctx: typer.Context,
    orchestration: Annotated[str | None, typer.Option(
        "--orchestration", "-o", help="Only runs of this orchestration.")] = None,
    status: Annotated[RunStatus | None, typer.Option(
        "--status", "-s", help="Only runs in this status.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=500,
                                       help="At most this many runs.")] = 50,
    json_: JsonFlag = False,
) -> None:
    """The latest runs, most recently changed first."""
    params = {"orchestration": orchestration, "status": status.value if status else None,
              "limit": limit}
    with session(ctx).client("stage-coordinator") as client:
        answer = client.get("/runs", params)
    if json_:
        echo_json(answer)
        return
    rows = [[r.get("id"), r.get("orchestration"), r.get("version"), r.get("status"),
             r.get("stage"), fmt_time(r.get("created_at")), fmt_time(r.get("updated_at")),
             r.get("error") or ""] for r in answer or []]
    echo_table(["run", "orchestration", "v", "status", "stage", "created", "updated", "error"],
               rows, "no runs")


@app.command()
def show(ctx: typer.Context, run_id: RunArg, json_: JsonFlag = False) -> None:
    """A run: where it is now, and its history as a timeline."""
    with session(ctx).client("stage-coordinator") as client:
        run = client.get(f"/runs/{seg(run_id)}")
    if json_:
        echo_json(run)
    else:
        typer.echo(describe_run(run))


def _control(ctx: typer.Context, run_id: str, action: str, body: dict[str, Any],
             json_: bool) -> None:
    with session(ctx).client("stage-coordinator") as client:
        answer = client.post(f"/runs/{seg(run_id)}/{action}", body)
    if json_:
        echo_json(answer)
        return
    typer.echo(f"{action} of run {run_id} accepted (command {answer.get('command_id')}); "
               f"follow it with `baton runs show {run_id}`")


@app.command()
def cancel(ctx: typer.Context, run_id: RunArg, reason: ReasonOpt = "",
           json_: JsonFlag = False) -> None:
    """Cancel a run and its active steps and work items (admin)."""
    _control(ctx, run_id, "cancel", {"reason": reason}, json_)


@app.command()
def suspend(ctx: typer.Context, run_id: RunArg, reason: ReasonOpt = "",
            json_: JsonFlag = False) -> None:
    """Pause a run: nothing new starts until it is resumed (admin)."""
    _control(ctx, run_id, "suspend", {"reason": reason}, json_)


@app.command()
def resume(ctx: typer.Context, run_id: RunArg, reason: ReasonOpt = "",
           json_: JsonFlag = False) -> None:
    """Resume a suspended run, or a run in error (admin)."""
    _control(ctx, run_id, "resume", {"reason": reason}, json_)


@app.command()
def retry(ctx: typer.Context, run_id: RunArg, step: StepArg, reason: ReasonOpt = "",
          json_: JsonFlag = False) -> None:
    """Run a failed step again (admin)."""
    _control(ctx, run_id, "retry", {"step": step, "reason": reason}, json_)


@app.command()
def skip(
    ctx: typer.Context,
    run_id: RunArg,
    step: StepArg,
    output: Annotated[list[str] | None, typer.Option(
        "--output", metavar="KEY=VALUE",
        help="An output the skipped step stands in with, key=value; repeatable.")
    ] = None,
    reason: ReasonOpt = "",
    json_: JsonFlag = False,
) -> None:
    """Skip a step, giving any outputs later steps need (admin)."""
    body = {"step": step, "reason": reason, "outputs": parse_pairs(output or [], "--output")}
    _control(ctx, run_id, "skip", body, json_)


@app.command()
def migrate(
    ctx: typer.Context,
    run_id: RunArg,
    to_version: Annotated[int, typer.Option("--to-version", min=1, help="The target version.")],
    reason: ReasonOpt = "",
    json_: JsonFlag = False,
) -> None:
    """Move a run to another version of its orchestration (admin)."""
    _control(ctx, run_id, "migrate", {"to_version": to_version, "reason": reason}, json_)
