"""baton stats: the bottleneck report (GET /stats on the stage-coordinator)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import typer

from cli.output import echo_json, plural, render_table
from cli.session import session


def fmt_seconds(value: Any) -> str:
    """Seconds as people read them: 42s, 3m20s, 2h5m, 3d4h; '-' when unknown."""
    if value is None:
        return "-"
    total = float(value)
    if total < 60:
        return f"{total:.1f}s" if total < 10 and total != int(total) else f"{total:.0f}s"
    seconds = round(total)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts[:2])


def _rows(entries: Sequence[Mapping[str, Any]], names: Sequence[str]) -> list[list[str]]:
    def waited(e: Mapping[str, Any], key: str) -> str:
        return fmt_seconds(e.get(key)) if e.get("work_in_progress") else "-"

    return [[*(str(e.get(n, "")) for n in names), str(e.get("work_in_progress", 0)),
             waited(e, "oldest_seconds"), waited(e, "waiting_seconds"),
             str(e.get("finished", 0)), f"{e.get('throughput_per_hour', 0):g}",
             fmt_seconds(e.get("p50_seconds")), fmt_seconds(e.get("p90_seconds"))]
            for e in entries]


MEASURES = ["wip", "oldest", "waiting", "finished", "per hour", "p50", "p90"]


def describe_bottleneck(bottleneck: Mapping[str, Any] | None) -> str:
    if not bottleneck:
        return "bottleneck: none (no run is waiting in a stage)"
    return (f"bottleneck: {bottleneck.get('orchestration')} / stage {bottleneck.get('stage')}: "
            f"{plural(int(bottleneck.get('work_in_progress') or 0), 'run')} waiting "
            f"{fmt_seconds(bottleneck.get('waiting_seconds'))} in all, "
            f"the oldest {fmt_seconds(bottleneck.get('oldest_seconds'))}")


def describe_stats(report: Mapping[str, Any]) -> str:
    """The report as text: the bottleneck, then per orchestration its stages, steps, waits."""
    window = fmt_seconds(report.get("window_seconds"))
    lines = [f"window: the last {window} (since {report.get('since')}), "
             f"{report.get('runs_considered', 0)} runs"
             + (" (capped: more runs than the report reads)" if report.get("truncated") else ""),
             describe_bottleneck(report.get("bottleneck"))]
    orchestrations = report.get("orchestrations") or []
    if not orchestrations:
        lines.append("\nno runs in the window and none active")
    for orch in orchestrations:
        runs = orch.get("runs") or {}
        counts = ", ".join(f"{k} {v}" for k, v in runs.items()) or "no runs"
        lines.append(f"\n{orch.get('orchestration')} ({counts})")
        lines.append("  " + describe_bottleneck(orch.get("bottleneck")))
        if orch.get("stages"):
            table = render_table(["stage", *MEASURES], _rows(orch["stages"], ["stage"]))
            lines.append(_indent(table))
        if orch.get("steps"):
            table = render_table(["stage", "step", "kind", *MEASURES],
                                 _rows(orch["steps"], ["stage", "step", "kind"]))
            lines.append("\n" + _indent(table))
        waiting = orch.get("longest_waiting") or []
        if waiting:
            rows = [[w.get("run_id"), w.get("stage"), w.get("step"), w.get("status"),
                     fmt_seconds(w.get("age_seconds"))] for w in waiting]
            lines.append("\n  longest waiting\n" + _indent(render_table(
                ["run", "stage", "step", "status", "age"], rows, max_cell=40)))
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def stats(
    ctx: typer.Context,
    since: Annotated[str, typer.Option(
        "--since", help="The window for durations and throughput: 30m, 1h, 1d, 7d.")] = "1h",
    orchestration: Annotated[str | None, typer.Option(
        "--orchestration", "-o", help="Only this orchestration.")] = None,
    top: Annotated[int, typer.Option(
        "--top", min=1, max=100, help="How many longest-waiting steps to list.")] = 10,
    json_: Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")] = False,
) -> None:
    """Where runs spend their time: p50/p90 durations, work in progress, throughput, the
    longest waiting steps and the bottleneck stage now."""
    params = {"since": since, "orchestration": orchestration, "top": top}
    with session(ctx).client("stage-coordinator") as client:
        report = client.get("/stats", params)
    if json_:
        echo_json(report)
    else:
        typer.echo(describe_stats(report))
