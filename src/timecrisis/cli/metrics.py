"""`timecrisis metrics`: job counts and average duration, overall and per type."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from timecrisis.cli._output import dump, make_console, print_json, print_json_line, seconds
from timecrisis.cli._params import DURATION, json_option
from timecrisis.cli._store import storage_option, with_scheduler
from timecrisis.models import Metrics, TypeMetrics
from timecrisis.scheduler import JobScheduler

_COUNTS = ("pending", "running", "completed", "failed", "canceled", "dead_letter")


def metrics_table(metrics: Metrics, taken_at: datetime | None = None) -> Table:
    """One row per job type and a total row. (The demo has its own, smaller table.)"""
    caption = None if taken_at is None else f"at {taken_at:%Y-%m-%d %H:%M:%S} UTC"
    table = Table(caption=caption, caption_justify="left", header_style="bold")
    table.add_column("type", no_wrap=True)  # copied into `jobs list --type`
    for name in _COUNTS:
        table.add_column(name.replace("_", " "), justify="right", overflow="fold")
    table.add_column("avg duration", justify="right", overflow="fold")

    def add(name: str, counts: TypeMetrics, style: str = "") -> None:
        table.add_row(
            name,
            *(str(getattr(counts, field)) for field in _COUNTS),
            seconds(counts.average_duration),
            style=style,
        )

    for name, type_metrics in sorted(metrics.types.items()):
        add(name, type_metrics)
    add("all types", metrics, style="bold")
    return table


@click.command(short_help="Job counts and durations, per type.")
@storage_option()
@json_option("Print JSON (with --watch: one object per refresh, JSON Lines).")
@click.option("--watch", "-w", is_flag=True, help="Refresh until Ctrl-C.")
@click.option(
    "--interval",
    type=DURATION,
    default="2s",
    show_default=True,
    help="Time between refreshes with --watch.",
)
@click.option("--iterations", type=click.IntRange(min=1), hidden=True)  # tests and scripts
def metrics(
    storage_url: str,
    as_json: bool,
    watch: bool,
    interval: timedelta,
    iterations: int | None,
) -> None:
    """Show job counts by status (and dead-lettered) and the average run duration, overall and
    per job type, computed in the store.

    \b
    Examples:
      timecrisis metrics --storage sqlite:///app.db
      timecrisis metrics --watch --interval 5s
      timecrisis metrics --json | jq .dead_letter
    """
    console = make_console()
    rounds = iterations if iterations is not None else (None if watch else 1)

    async def show(scheduler: JobScheduler) -> None:
        if not watch:
            _emit(console, await scheduler.get_metrics(), as_json, None)
            return
        screen: Live | _NoLive = (
            Live(console=console, auto_refresh=False)
            if _live(console, as_json)
            else _NoLive(console)
        )
        with screen:
            done = 0
            while rounds is None or done < rounds:
                current = await scheduler.get_metrics()
                taken_at = datetime.now(UTC)
                if as_json:
                    print_json_line({"time": taken_at.isoformat(), **dump(current)})
                else:
                    screen.update(metrics_table(current, taken_at), refresh=True)
                done += 1
                if rounds is None or done < rounds:
                    await asyncio.sleep(interval.total_seconds())

    try:
        with_scheduler(storage_url, show)
    except KeyboardInterrupt:  # the way out of --watch
        return


def _emit(console: Console, current: Metrics, as_json: bool, taken_at: datetime | None) -> None:
    if as_json:
        print_json(dump(current))
    else:
        console.print(metrics_table(current, taken_at))


def _live(console: Console, as_json: bool) -> bool:
    # Redrawing in place only makes sense on a terminal; piped output gets one table per refresh.
    return console.is_terminal and not as_json


class _NoLive:
    """`Live`'s interface for output that is not a terminal: print each table in turn."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def __enter__(self) -> _NoLive:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, renderable: Table, *, refresh: bool = False) -> None:
        self._console.print(renderable)
