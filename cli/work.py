"""baton work: the Work Guide's work items (the assignment service)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.client import seg
from cli.errors import CliError
from cli.output import (
    echo_json,
    echo_table,
    fmt_time,
    fmt_value,
    plural,
    render_fields,
    render_table,
)
from cli.session import session
from cli.values import merged

app = typer.Typer(help="Your work items: list, claim, complete, approve, hand over.",
                  no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")]
IdArg = Annotated[str, typer.Argument(help="The work item's id.", show_default=False)]
CommentOpt = Annotated[str, typer.Option("--comment", "-m", help="A comment for the record.")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (kept in the item's history).")]


class WorkStatus(StrEnum):
    open = "open"
    claimed = "claimed"
    completed = "completed"
    canceled = "canceled"
    active = "active"


class Sort(StrEnum):
    due = "due"
    created = "created"


class ToKind(StrEnum):
    user = "user"
    group = "group"
    queue = "queue"


ToKindOpt = Annotated[ToKind, typer.Option("--to-kind", help="user, group or queue.")]
ToOpt = Annotated[str, typer.Option("--to", help="The user, group or queue id.")]


def assignee_text(item: Mapping[str, Any]) -> str:
    kind, who = item.get("assignee_kind") or "", item.get("assignee") or ""
    text = f"{kind} {who}".strip() or "-"
    if item.get("delegated_to"):
        text += f" (delegated to {item['delegated_to']})"
    elif item.get("delegated_from"):
        text += f" (standing in for {item['delegated_from']})"
    return text


def due_text(item: Mapping[str, Any]) -> str:
    if not item.get("due_at"):
        return "-"
    return fmt_time(item["due_at"]) + (" OVERDUE" if item.get("overdue") else "")


def work_rows(items: list[Mapping[str, Any]]) -> list[list[Any]]:
    return [[i.get("id"), i.get("title"), i.get("kind"), i.get("status"), assignee_text(i),
             i.get("claimed_by"), due_text(i), i.get("orchestration"), i.get("step")]
            for i in items]


WORK_HEADERS = ["id", "title", "kind", "status", "assignee", "claimed by", "due",
                "orchestration", "step"]


def form_rows(form: Any, *, approval: bool = False) -> list[list[Any]]:
    """One row per field of a form's JSON Schema: name, type, required, constraints.

    An approval's ``required`` holds for approving; rejecting needs only the fields under
    ``required_on_reject``.
    """
    if not isinstance(form, Mapping):
        return []
    required = set(form.get("required") or [])
    on_reject = set(form.get("required_on_reject") or []) if approval else required
    rows = []
    for name, prop in (form.get("properties") or {}).items():
        prop = prop if isinstance(prop, Mapping) else {}
        kind = prop.get("type", "any")
        kind = "|".join(kind) if isinstance(kind, list) else str(kind)
        rules = []
        if "enum" in prop:
            rules.append("one of " + ", ".join(str(v) for v in prop["enum"]))
        if "format" in prop:
            rules.append(f"format {prop['format']}")
        for key in ("minLength", "maxLength", "minimum", "maximum", "pattern"):
            if key in prop:
                rules.append(f"{key} {prop[key]}")
        needed = {(True, True): "yes", (True, False): "to approve",
                  (False, True): "to reject", (False, False): "no"}
        rows.append([name, kind, needed[name in required, name in on_reject],
                     "; ".join(rules) or prop.get("description", "") or "-"])
    return rows


def describe_item(item: Mapping[str, Any]) -> str:
    fields: list[tuple[str, Any]] = [
        ("work item", item.get("id")),
        ("title", item.get("title")),
        ("kind", item.get("kind")),
        ("status", item.get("status")),
        ("assignee", assignee_text(item)),
        ("claimed by", item.get("claimed_by")),
        ("due", due_text(item)),
        ("run", f"{item.get('run_id')} ({item.get('orchestration')}, "
                f"stage {item.get('stage')}, step {item.get('step')})"),
        ("created", fmt_time(item.get("created_at"))),
        ("updated", fmt_time(item.get("updated_at"))),
    ]
    if item.get("decision"):
        fields.append(("decision", item["decision"]))
    if item.get("comment"):
        fields.append(("comment", item["comment"]))
    if item.get("completed_by"):
        fields.append(("completed by", item["completed_by"]))
    parts = [render_fields(fields)]
    rows = form_rows(item.get("form"), approval=item.get("kind") == "approval")
    if rows:
        parts.append("\nform\n" + render_table(["field", "type", "required", "rules"], rows))
    for title, key in (("record", "record"), ("outputs", "outputs")):
        data = item.get(key)
        if isinstance(data, Mapping) and data:
            parts.append(f"\n{title}\n" + render_fields([(str(k), v) for k, v in data.items()]))
    context = item.get("context")
    inputs = context.get("inputs") if isinstance(context, Mapping) else None
    if isinstance(inputs, Mapping) and inputs:
        parts.append("\ninputs\n" + render_fields([(str(k), v) for k, v in inputs.items()]))
    history = item.get("history") or []
    if history:
        rows = [[fmt_time(h.get("at")), h.get("actor"), h.get("action"), history_change(h)]
                for h in history]
        parts.append("\nhistory\n" + render_table(["time", "actor", "action", "change"], rows,
                                                  max_cell=100))
    return "\n".join(parts)


def _shown(value: Any) -> str:
    return "-" if value in (None, "") else fmt_value(value)


def history_change(entry: Mapping[str, Any]) -> str:
    """``field: old -> new``, or just the new value (a comment) when no field changed."""
    if not entry.get("field"):
        return fmt_value(entry.get("new")) if entry.get("new") not in (None, "") else ""
    return f"{entry['field']}: {_shown(entry.get('old'))} -> {_shown(entry.get('new'))}"


def _act(ctx: typer.Context, item_id: str, action: str, body: Any, done: str,
         json_: bool) -> None:
    with session(ctx).client("assignment") as client:
        item = client.post(f"/work/{seg(item_id)}/{action}", body)
    if json_:
        echo_json(item)
        return
    item = item if isinstance(item, Mapping) else {}
    title = f" ({item['title']})" if item.get("title") else ""
    state = f"status {item.get('status')}, {assignee_text(item)}"
    if item.get("claimed_by"):
        state += f", claimed by {item['claimed_by']}"
    typer.echo(f"{done} {item_id}{title}: {state}")


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[WorkStatus, typer.Option(
        "--status", "-s", help="active = open and claimed.")] = WorkStatus.active,
    all_: Annotated[bool, typer.Option("--all", help="Everyone's items, not just yours "
                                                     "(admin).")] = False,
    overdue: Annotated[bool, typer.Option("--overdue", help="Only overdue items.")] = False,
    orchestration: Annotated[str | None, typer.Option(
        "--orchestration", "-o", help="Only this orchestration's items.")] = None,
    sort: Annotated[Sort, typer.Option("--sort", help="Soonest due or newest first.")] = Sort.due,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=500,
                                       help="At most this many items.")] = 50,
    json_: JsonFlag = False,
) -> None:
    """The work items you can act on (or everyone's with --all)."""
    params = {"status": status.value, "scope": "all" if all_ else "mine",
              "orchestration": orchestration, "overdue": "true" if overdue else None,
              "sort": sort.value, "limit": limit}
    with session(ctx).client("assignment") as client:
        items = client.get("/work", params)
    if json_:
        echo_json(items)
        return
    echo_table(WORK_HEADERS, work_rows(items or []), f"no {status.value} work items")


@app.command()
def show(ctx: typer.Context, item_id: IdArg, json_: JsonFlag = False) -> None:
    """One work item: its form, record, context and history."""
    with session(ctx).client("assignment") as client:
        item = client.get(f"/work/{seg(item_id)}")
    if json_:
        echo_json(item)
    else:
        typer.echo(describe_item(item))


@app.command()
def claim(ctx: typer.Context, item_id: IdArg, json_: JsonFlag = False) -> None:
    """Take a group or queue item for yourself."""
    _act(ctx, item_id, "claim", None, "claimed", json_)


@app.command()
def release(ctx: typer.Context, item_id: IdArg, json_: JsonFlag = False) -> None:
    """Give a claimed item back to its group or queue."""
    _act(ctx, item_id, "release", None, "released", json_)


FieldOpt = Annotated[list[str] | None, typer.Option(
    "--field", "-f", "--value", "-v", metavar="KEY=VALUE",
    help="A form field as key=value (JSON values are parsed); repeatable.")]
ValuesOpt = Annotated[Path | None, typer.Option(
    "--values", help="A JSON or YAML file of form values (--field overrides it).")]


@app.command()
def complete(ctx: typer.Context, item_id: IdArg, field: FieldOpt = None,
             values: ValuesOpt = None, json_: JsonFlag = False) -> None:
    """Submit the form and complete the item."""
    body = {"values": merged(values, field or [], "--field")}
    _act(ctx, item_id, "complete", body, "completed", json_)


@app.command()
def approve(ctx: typer.Context, item_id: IdArg, comment: CommentOpt = "",
            field: FieldOpt = None, values: ValuesOpt = None, json_: JsonFlag = False) -> None:
    """Approve an approval item, with its form's fields if it has a form."""
    body = {"comment": comment, "values": merged(values, field or [], "--field")}
    _act(ctx, item_id, "approve", body, "approved", json_)


@app.command()
def reject(ctx: typer.Context, item_id: IdArg, comment: CommentOpt = "",
           field: FieldOpt = None, values: ValuesOpt = None, json_: JsonFlag = False) -> None:
    """Reject an approval item (only the form's required_on_reject fields are required)."""
    body = {"comment": comment, "values": merged(values, field or [], "--field")}
    _act(ctx, item_id, "reject", body, "rejected", json_)


@app.command()
def comment(
    ctx: typer.Context,
    item_id: IdArg,
    text: Annotated[str, typer.Argument(help="The comment.", show_default=False)],
    json_: JsonFlag = False,
) -> None:
    """Add a comment to an item's history."""
    _act(ctx, item_id, "comment", {"text": text}, "commented on", json_)


@app.command()
def delegate(
    ctx: typer.Context,
    item_id: IdArg,
    user: Annotated[str, typer.Argument(help="Who works on it for you.", show_default=False)],
    json_: JsonFlag = False,
) -> None:
    """Let another user work on your item."""
    _act(ctx, item_id, "delegate", {"to": user}, "delegated", json_)


@app.command()
def reassign(ctx: typer.Context, item_id: IdArg, to_kind: ToKindOpt, to: ToOpt,
             reason: ReasonOpt = "", json_: JsonFlag = False) -> None:
    """Give an item to another user, group or queue (admin)."""
    body = {"to_kind": to_kind.value, "to": to, "reason": reason}
    _act(ctx, item_id, "reassign", body, "reassigned", json_)


@app.command("bulk-reassign")
def bulk_reassign(
    ctx: typer.Context,
    item_ids: Annotated[list[str], typer.Argument(help="The work items' ids.",
                                                  show_default=False)],
    to_kind: ToKindOpt,
    to: ToOpt,
    reason: ReasonOpt = "",
    json_: JsonFlag = False,
) -> None:
    """Reassign many items at once; each succeeds or fails on its own (admin)."""
    body = {"ids": item_ids, "to_kind": to_kind.value, "to": to, "reason": reason}
    with session(ctx).client("assignment") as client:
        answer = client.post("/work/bulk/reassign", body)
    results = answer.get("results", []) if isinstance(answer, Mapping) else []
    failed = [r for r in results if not r.get("ok")]
    if json_:
        echo_json(answer)
    else:
        rows = [[r.get("id"), "reassigned" if r.get("ok") else "failed", r.get("error") or ""]
                for r in results]
        echo_table(["id", "result", "error"], rows, "nothing to reassign")
    if failed:
        raise CliError(f"{plural(len(failed), 'work item')} of {len(results)} "
                       "could not be reassigned")
