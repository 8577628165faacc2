"""baton login / logout / whoami."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from cli.client import HttpError, ServiceClient
from cli.config import credentials_path, read_credentials, remove_credentials, write_credentials
from cli.errors import CliError, UsageError
from cli.output import echo_json, fmt_value, render_fields
from cli.session import session

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")]


def _read_token(token: str) -> str:
    if token != "-":
        return token.strip()
    if sys.stdin.isatty():
        return str(typer.prompt("token", hide_input=True)).strip()
    return sys.stdin.readline().strip()


def login(
    ctx: typer.Context,
    token: Annotated[str, typer.Argument(help="The bearer token ('-' reads it from stdin).")],
    check: Annotated[
        bool, typer.Option("--check/--no-check", help="Ask the assignment service who it is.")
    ] = True,
) -> None:
    """Save a token (and any --*-url given) in the credentials file, readable only by you."""
    s = session(ctx)
    value = _read_token(token)
    if not value or any(c.isspace() for c in value):
        raise UsageError("the token is empty or contains spaces")
    who: dict[str, Any] | None = None
    warning = ""
    if check:
        url = s.config.url("assignment")
        try:
            with ServiceClient("assignment", url, value) as client:
                answer = client.get("/me")
                who = answer if isinstance(answer, dict) else None
        except HttpError as exc:
            if exc.status in (401, 403):
                raise CliError(f"the token was refused, nothing saved: {exc.message}") from exc
            warning = f"saved without checking it: {exc.message}"
        except CliError as exc:
            warning = f"saved without checking it: {exc.message}"
    data = read_credentials(s.env)
    data["token"] = value
    urls = {name: url for name, url in s.flags.urls.items() if url}
    if urls:
        saved = data.get("services")
        data["services"] = {**(saved if isinstance(saved, dict) else {}), **urls}
    path = write_credentials(s.env, data)
    if who is not None:
        name = f" ({who['name']})" if who.get("name") else ""
        roles = f", roles: {fmt_value(who.get('roles'))}" if who.get("roles") else ""
        typer.echo(f"logged in as {who.get('user_id')}{name}{roles}")
    if warning:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"token saved to {path}")


def logout(ctx: typer.Context) -> None:
    """Forget the saved token (delete the credentials file)."""
    s = session(ctx)
    path = credentials_path(s.env)
    if remove_credentials(s.env):
        typer.echo(f"logged out: removed {path}")
    else:
        typer.echo(f"not logged in: {path} does not exist")
    if s.env.get("BATON_TOKEN"):
        typer.echo("note: BATON_TOKEN is still set in your environment", err=True)


def whoami(ctx: typer.Context, json_: JsonFlag = False) -> None:
    """Who the token in effect belongs to (GET /me on the assignment service)."""
    s = session(ctx)
    with s.client("assignment") as client:
        me = client.get("/me")
    if json_:
        echo_json(me)
        return
    me = me if isinstance(me, dict) else {}
    typer.echo(render_fields([
        ("user", me.get("user_id")),
        ("name", me.get("name")),
        ("email", me.get("email")),
        ("roles", me.get("roles")),
        ("groups", me.get("groups")),
        ("queues", me.get("queues")),
        ("token from", s.config.token_source),
    ]))
