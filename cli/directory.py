"""baton directory load | show | out-of-office (the assignment service)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.client import seg
from cli.errors import UsageError
from cli.output import echo_json, fmt_value, render_table
from cli.session import session
from cli.values import load_mapping

app = typer.Typer(help="The people, groups and queues work is assigned to.",
                  no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")]


@app.command()
def load(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The directory, in YAML or JSON "
                                              "(examples/directory.yaml).", show_default=False)],
    json_: JsonFlag = False,
) -> None:
    """Replace the whole directory with a file's users, groups and queues (admin)."""
    document = load_mapping(file)
    with session(ctx).client("assignment") as client:
        answer = client.put("/directory", document)
    if json_:
        echo_json(answer)
        return
    counts = answer if isinstance(answer, Mapping) else {}
    typer.echo(f"loaded {counts.get('users', 0)} users, {counts.get('groups', 0)} groups, "
               f"{counts.get('queues', 0)} queues from {file}")


def describe_directory(directory: Mapping[str, Any]) -> str:
    users = directory.get("users") or []
    groups = directory.get("groups") or []
    queues = directory.get("queues") or []
    parts = []
    rows = [[u.get("id"), u.get("name"), u.get("email"), u.get("manager"), u.get("groups"),
             u.get("queues"), "out" if u.get("out_of_office") else "in", u.get("delegate"),
             u.get("channels")]
            for u in users]
    parts.append(f"users ({len(users)})\n" + (render_table(
        ["id", "name", "email", "manager", "groups", "queues", "office", "delegate", "channels"],
        rows) if rows else "(none)"))
    for title, pools in (("groups", groups), ("queues", queues)):
        rows = [[p.get("id"), p.get("name"), fmt_value(p.get("members"))] for p in pools]
        parts.append(f"\n{title} ({len(pools)})\n"
                     + (render_table(["id", "name", "members"], rows, max_cell=100)
                        if rows else "(none)"))
    return "\n".join(parts)


@app.command()
def show(ctx: typer.Context, json_: JsonFlag = False) -> None:
    """The directory: users (with managers, delegates, out of office), groups and queues."""
    with session(ctx).client("assignment") as client:
        answer = client.get("/directory")
    if json_:
        echo_json(answer)
    else:
        typer.echo(describe_directory(answer if isinstance(answer, Mapping) else {}))


@app.command("out-of-office")
def out_of_office(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="The user.", show_default=False)],
    out: Annotated[bool | None, typer.Option(
        "--on/--off", help="Out of office (--on) or back (--off).", show_default=False)] = None,
    delegate: Annotated[str | None, typer.Option(
        "--delegate", help="Who gets their new work while they are out.")] = None,
    json_: JsonFlag = False,
) -> None:
    """Mark a user out of office (new work goes to their delegate) or back (admin or self)."""
    if out is None:
        raise UsageError("say --on (out of office) or --off (back)")
    body: dict[str, Any] = {"out_of_office": out}
    if delegate is not None:
        body["delegate"] = delegate or None
    with session(ctx).client("assignment") as client:
        answer = client.patch(f"/directory/users/{seg(user)}", body)
    if json_:
        echo_json(answer)
        return
    answer = answer if isinstance(answer, Mapping) else {}
    if answer.get("out_of_office", out):
        who = answer.get("delegate", delegate)
        typer.echo(f"{user} is out of office; new work goes to "
                   + (who if who else "them anyway (no delegate)"))
    else:
        typer.echo(f"{user} is back in the office")
