"""baton definitions validate | publish | list | show (the trigger service)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.client import seg
from cli.errors import UsageError
from cli.output import (
    echo_json,
    echo_table,
    fmt_duration,
    fmt_time,
    fmt_value,
    plural,
    render_fields,
)
from cli.session import session

app = typer.Typer(help="Validate, publish and read orchestration definitions.",
                  no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")]


class Format(StrEnum):
    yaml = "yaml"
    json = "json"


FileArg = Annotated[Path, typer.Argument(help="The definition, in YAML or JSON.",
                                         show_default=False)]
FormatOpt = Annotated[
    Format | None,
    typer.Option("--format", help="yaml or json (default: from the file name)."),
]


def _read(file: Path, fmt: Format | None) -> tuple[bytes, str]:
    try:
        content = file.read_bytes()
    except FileNotFoundError as exc:
        raise UsageError(f"no such file: {file}") from exc
    except OSError as exc:
        raise UsageError(f"cannot read {file}: {exc.strerror or exc}") from exc
    if fmt is None:
        fmt = Format.json if file.suffix.lower() == ".json" else Format.yaml
    return content, fmt.value


@app.command()
def validate(
    ctx: typer.Context, file: FileArg, format: FormatOpt = None, json_: JsonFlag = False
) -> None:
    """Check a definition without publishing it (admin or designer); problems are printed as
    `path: message`, and so are warnings (a credential written out in a header)."""
    content, fmt = _read(file, format)
    with session(ctx).client("trigger") as client:
        answer = client.post("/definitions/validate", content=content, params={"format": fmt},
                             headers={"Content-Type": f"application/{fmt}"})
    if json_:
        echo_json(answer)
        return
    stages = answer.get("stages", 0) if isinstance(answer, dict) else 0
    name = answer.get("name") if isinstance(answer, dict) else "?"
    typer.echo(f"{file} is valid: orchestration {name!r}, {plural(int(stages), 'stage')}")
    _warn(answer)


@app.command()
def publish(
    ctx: typer.Context, file: FileArg, format: FormatOpt = None, json_: JsonFlag = False
) -> None:
    """Publish a definition as the next version of its orchestration (admin or designer)."""
    content, fmt = _read(file, format)
    with session(ctx).client("trigger") as client:
        answer = client.post("/definitions", content=content, params={"format": fmt},
                             headers={"Content-Type": f"application/{fmt}"})
    if json_:
        echo_json(answer)
        return
    typer.echo(f"published {answer.get('name')} version {answer.get('version')}")
    _warn(answer)


def _warn(answer: Any) -> None:
    warnings = answer.get("warnings", []) if isinstance(answer, dict) else []
    for warning in warnings:
        typer.echo(f"warning: {warning.get('path')}: {warning.get('message')}", err=True)


@app.command("list")
def list_(ctx: typer.Context, json_: JsonFlag = False) -> None:
    """Every published orchestration and version, newest version first."""
    with session(ctx).client("trigger") as client:
        answer = client.get("/definitions")
    if json_:
        echo_json(answer)
        return
    rows = [[d.get("name"), d.get("version"), d.get("published_by"),
             fmt_time(d.get("published_at"))] for d in answer or []]
    echo_table(["name", "version", "published by", "published at"], rows,
               "no published definitions (publish one with `baton definitions publish FILE`)")


def describe_definition(doc: dict[str, Any]) -> str:
    """A readable outline of a published definition: its stages, steps and decisions."""
    inner = doc.get("definition")
    definition: dict[str, Any] = inner if isinstance(inner, dict) else doc
    lines = [render_fields([
        ("name", doc.get("name", definition.get("name"))),
        ("version", doc.get("version", definition.get("version"))),
        ("description", definition.get("description") or "-"),
        ("published", f"{fmt_time(doc.get('published_at'))} by {doc.get('published_by', '-')}"),
    ])]
    trigger = definition.get("trigger") or {}
    record = trigger.get("record") if isinstance(trigger, dict) else None
    if record:
        on = fmt_value(record.get("on"))
        when = f" when {record['when']}" if record.get("when") else ""
        lines.append(f"trigger:      {record.get('object')} {on}{when}")
    inputs = definition.get("inputs") or {}
    if inputs:
        parts = []
        for name, spec in inputs.items():
            spec = spec if isinstance(spec, dict) else {}
            mark = "*" if spec.get("required") else ""
            default = f"={fmt_value(spec['default'])}" if spec.get("default") is not None else ""
            parts.append(f"{name}{mark} ({spec.get('type', 'string')}){default}")
        lines.append("inputs:       " + ", ".join(parts))
    for index, stage in enumerate(definition.get("stages") or [], start=1):
        extra = [f"entry: {stage['entry']}" if stage.get("entry") else "",
                 f"exit: {stage['exit']}" if stage.get("exit") else "",
                 f"sla: {fmt_duration(stage['sla'])}" if stage.get("sla") else ""]
        suffix = "  " + "  ".join(e for e in extra if e) if any(extra) else ""
        lines.append(f"\n{index}. stage {stage.get('name')}{suffix}")
        for step in stage.get("steps") or []:
            lines.append("     " + _describe_step(step))
        fault = stage.get("on_fault")
        if isinstance(fault, dict) and fault.get("goto"):
            lines.append(f"     on fault: go to {fault['goto']}")
        for decision in stage.get("decisions") or []:
            target = "end the run" if decision.get("end") else f"go to {decision.get('goto')}"
            lines.append(f"     decision: when {decision.get('when', 'true')}: {target}")
    return "\n".join(lines)


def _describe_step(step: dict[str, Any]) -> str:
    kind = step.get("kind", "background")
    if kind == "background":
        what = f"action {step.get('action')}"
    else:
        assignee = step.get("assignee") or {}
        who = ", ".join(f"{k} {v}" for k, v in assignee.items() if v) if isinstance(
            assignee, dict) else str(assignee)
        what = f"for {who or '?'}"
    extras = []
    if step.get("after"):
        extras.append(f"after {fmt_value(step['after'])}")
    if step.get("when"):
        extras.append(f"when {step['when']}")
    if step.get("due"):
        extras.append(f"due {fmt_duration(step['due'])}")
    if step.get("optional"):
        extras.append("optional")
    title = step.get("title")
    text = f"- {step.get('name')}  [{kind}] {what}"
    if title and title != step.get("name"):
        text += f"  {title!r}"
    return text + (f"  ({'; '.join(extras)})" if extras else "")


def _without_empty(entry: Any) -> Any:
    if not isinstance(entry, dict):
        return entry
    return {k: v for k, v in entry.items() if v is not None and v != [] and v != {}}


def prune_defaults(definition: dict[str, Any]) -> dict[str, Any]:
    """The stored definition without its unset fields (null, [] and {}), so it reads like
    the YAML it was written as and can be edited and published again.

    Only the definition's own structure is pruned (the top level, the trigger, stages,
    steps and decisions), never the insides of inputs, forms or expressions.
    """
    result: dict[str, Any] = _without_empty(definition)
    result.pop("version", None)  # publishing sets it
    if isinstance(result.get("trigger"), dict):
        trigger = _without_empty(result["trigger"])
        if trigger.get("at_most_one_active_per_record") is False:
            trigger.pop("at_most_one_active_per_record")
        if trigger:
            result["trigger"] = trigger
        else:
            result.pop("trigger")
    stages = []
    for stage in result.get("stages") or []:
        stage = _without_empty(stage)
        if isinstance(stage.get("steps"), list):
            stage["steps"] = [_without_empty(step) for step in stage["steps"]]
            for step in stage["steps"]:
                if isinstance(step, dict) and step.get("optional") is False:
                    step.pop("optional")
        if isinstance(stage.get("decisions"), list):
            stage["decisions"] = [_without_empty(d) for d in stage["decisions"]]
        stages.append(stage)
    if stages:
        result["stages"] = stages
    return result


@app.command()
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The orchestration's name.")],
    version: Annotated[int | None, typer.Option("--version", min=1,
                                                help="A version (default: the latest).")] = None,
    as_yaml: Annotated[bool, typer.Option("--yaml", help="Print the definition as YAML.")] = False,
    json_: JsonFlag = False,
) -> None:
    """One published definition: an outline by default, --yaml or --json for the document."""
    with session(ctx).client("trigger") as client:
        answer = client.get(f"/definitions/{seg(name)}", params={"version": version})
    if json_:
        echo_json(answer)
    elif as_yaml:
        import yaml  # only this branch writes YAML

        definition = prune_defaults(answer.get("definition", answer))
        typer.echo(yaml.safe_dump(definition, sort_keys=False, allow_unicode=True).rstrip())
    else:
        typer.echo(describe_definition(answer))
