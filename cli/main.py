"""The `baton` command: global flags, then one sub-command group per service area.

Each group's module is imported only when that group runs (``LAZY``): a command pays for
its own imports, not for every other command's, and ``baton --help`` imports none of them.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from cli.config import Flags
from cli.errors import CliError
from cli.session import Session


@dataclass(frozen=True)
class Lazy:
    """A command (a Typer app or a function) in ``module``, with its one-line help."""

    module: str
    attribute: str
    help: str


LAZY = {
    "login": Lazy("cli.account", "login", "Save a token so later commands use it."),
    "logout": Lazy("cli.account", "logout", "Forget the saved token."),
    "whoami": Lazy("cli.account", "whoami", "Who the token in effect belongs to."),
    "stats": Lazy("cli.stats", "stats", "Where runs spend their time: the bottleneck report."),
    "definitions": Lazy("cli.definitions", "app",
                        "Validate, publish and read orchestration definitions."),
    "runs": Lazy("cli.runs", "app", "Start runs, follow them and steer them."),
    "work": Lazy("cli.work", "app", "Your work items: list, claim, complete, approve, hand over."),
    "tokens": Lazy("cli.tokens", "app", "Issue, list and revoke bearer tokens (admin)."),
    "directory": Lazy("cli.directory", "app", "The people, groups and queues work is assigned to."),
    "deliveries": Lazy("cli.deliveries", "app", "Notifications sent, pending and failed (admin)."),
}


def load(name: str) -> Any:
    """The click command for ``name``, importing its module now."""
    entry = LAZY[name]
    found = getattr(importlib.import_module(entry.module), entry.attribute)
    # Built under a group with the root's settings, as add_typer would (plain help text).
    holder = typer.Typer(rich_markup_mode=None, add_completion=False)
    if isinstance(found, typer.Typer):
        holder.add_typer(found, name=name)
    else:
        holder.command(name=name, help=entry.help)(found)
    return typer.main.get_group(holder).commands[name]


class BatonGroup(TyperGroup):
    """The root group: loads its sub-commands on demand; a CliError from any of them is
    printed on stderr, then exits."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*LAZY, *(name for name in super().list_commands(ctx) if name not in LAZY)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in LAZY:
            return load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The list in ``baton --help``, from LAZY's help lines (no module is imported)."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, entry.help) for name, entry in LAZY.items()])

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CliError as exc:
            typer.echo("\n".join(exc.lines), err=True)
            raise typer.Exit(exc.exit_code) from exc


app = typer.Typer(
    name="baton",
    cls=BatonGroup,
    help="Operate Baton: definitions, runs, work items, tokens, the directory, deliveries.\n\n"
    "Services and token come from flags, then BATON_TOKEN / BATON_*_URL, then "
    "`baton login`, then .baton/run.json (make run), then the local default ports.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _url_option(flag: str, service: str) -> object:
    return typer.Option(flag, help=f"The {service} service's URL.", show_default=False)


@app.callback()
def main(
    ctx: typer.Context,
    token: Annotated[str | None, typer.Option(
        "--token", help="The bearer token (else BATON_TOKEN, `baton login`, .baton/run.json).",
        show_default=False)] = None,
    trigger_url: Annotated[str | None, _url_option("--trigger-url", "trigger")] = None,
    coordinator_url: Annotated[str | None, _url_option(
        "--coordinator-url", "stage-coordinator")] = None,
    assignment_url: Annotated[str | None, _url_option("--assignment-url", "assignment")] = None,
    notification_url: Annotated[str | None, _url_option(
        "--notification-url", "notification")] = None,
) -> None:
    urls = {"trigger": trigger_url, "stage-coordinator": coordinator_url,
            "assignment": assignment_url, "notification": notification_url}
    ctx.obj = Session(flags=Flags(token=token, urls=urls), env=dict(os.environ), cwd=Path.cwd())

