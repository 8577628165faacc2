"""baton tokens issue | list | revoke (the assignment service; admin)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from cli.client import seg
from cli.output import echo_json, echo_table, fmt_time
from cli.session import session

app = typer.Typer(help="Issue, list and revoke bearer tokens (admin).", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")]


@app.command()
def issue(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="The user the token acts as.", show_default=False)],
    role: Annotated[list[str] | None, typer.Option(
        "--role", metavar="ROLE", help="A role to grant (admin, designer); repeatable.")] = None,
    note: Annotated[str, typer.Option("--note", help="What the token is for.")] = "",
    json_: JsonFlag = False,
) -> None:
    """Issue a token for a user; it is printed once and cannot be shown again.

    The token acts with the user's roles as the directory says when it is used; --role only
    checks that the user holds the role now.  It expires (BATON_TOKEN_DAYS, 30 days).
    """
    body: dict[str, Any] = {"user_id": user}
    if role:
        body["roles"] = list(role)
    if note:
        body["note"] = note
    with session(ctx).client("assignment") as client:
        answer = client.post("/tokens", body)
    if json_:
        echo_json(answer)
        return
    roles = ", ".join(answer.get("roles") or []) or "no roles"
    typer.echo(f"issued token {answer.get('id')} for {answer.get('user_id')} ({roles}); "
               "it is shown only now:", err=True)
    typer.echo(answer.get("token"))


@app.command("list")
def list_(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option("--user", help="Only this user's tokens.")] = None,
    json_: JsonFlag = False,
) -> None:
    """Every token issued (never the secrets themselves), newest first."""
    with session(ctx).client("assignment") as client:
        answer = client.get("/tokens", {"user_id": user})
    if json_:
        echo_json(answer)
        return
    rows = [[t.get("id"), t.get("user_id"), t.get("roles"), fmt_time(t.get("created_at")),
             fmt_time(t.get("expires_at")), _state(t), t.get("kind") or "api",
             t.get("note") or ""]
            for t in answer or []]
    echo_table(["id", "user", "roles", "created", "expires", "state", "kind", "note"], rows,
               "no tokens issued")


def _state(token: dict[str, Any]) -> str:
    if token.get("revoked"):
        return "revoked"
    try:
        expires = datetime.fromisoformat(str(token.get("expires_at")))
    except ValueError:
        return "active"  # issued before tokens expired: the services say when it does
    expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
    return "expired" if expires <= datetime.now(UTC) else "active"


@app.command()
def revoke(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(help="The token's id (from `baton tokens list`).",
                                            show_default=False)],
) -> None:
    """Revoke a token: it stops working at once here and within seconds on every service."""
    with session(ctx).client("assignment") as client:
        client.delete(f"/tokens/{seg(token_id)}")
    typer.echo(f"revoked token {token_id}")
