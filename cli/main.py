"""The `baton` command: global flags, then one sub-command group per service area."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from cli import account, definitions, deliveries, directory, runs, stats, tokens, work
from cli.config import Flags
from cli.errors import CliError
from cli.session import Session


class BatonGroup(TyperGroup):
    """The root group: a CliError from any command is printed on stderr, then exits."""

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


app.command(help="Save a token so later commands use it.")(account.login)
app.command(help="Forget the saved token.")(account.logout)
app.command(help="Who the token in effect belongs to.")(account.whoami)
app.add_typer(definitions.app, name="definitions")
app.add_typer(runs.app, name="runs")
app.add_typer(work.app, name="work")
app.add_typer(tokens.app, name="tokens")
app.add_typer(directory.app, name="directory")
app.add_typer(deliveries.app, name="deliveries")
app.command(help="Where runs spend their time: the bottleneck report.")(stats.stats)
