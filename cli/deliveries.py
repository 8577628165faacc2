"""baton deliveries list (the notification service; admin)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from cli.output import echo_json, echo_table, fmt_time
from cli.session import session

app = typer.Typer(help="Notifications sent, pending and failed (admin).", no_args_is_help=True)


class DeliveryStatus(StrEnum):
    pending = "pending"
    sent = "sent"
    failed = "failed"


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[DeliveryStatus | None, typer.Option(
        "--status", "-s", help="Only deliveries in this status.")] = None,
    recipient: Annotated[str | None, typer.Option(
        "--recipient", "-r", help="Only this user's deliveries.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=500,
                                       help="At most this many deliveries.")] = 50,
    json_: Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")] = False,
) -> None:
    """The latest deliveries, newest first."""
    params = {"status": status.value if status else None, "recipient": recipient, "limit": limit}
    with session(ctx).client("notification") as client:
        answer = client.get("/deliveries", params)
    if json_:
        echo_json(answer)
        return
    rows = [[fmt_time(d.get("created_at")), d.get("recipient"),
             d.get("channel"), d.get("source_type"), d.get("status"), d.get("attempts"),
             d.get("subject"), d.get("run_id"), d.get("last_error") or ""]
            for d in answer or []]
    echo_table(["created", "recipient", "channel", "event", "status", "attempts", "subject",
                "run", "last error"], rows, "no deliveries")
