"""`timecrisis demo`: a worker on a SQLite file for a few seconds, with a live view."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from datetime import UTC, datetime
from pathlib import Path

import click
from pydantic import BaseModel, EmailStr
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from timecrisis import (
    Job,
    JobContext,
    JobScheduler,
    JobStatus,
    Metrics,
    SQLiteJobStorage,
)

_STATUS_STYLE = {
    JobStatus.PENDING: "yellow",
    JobStatus.RUNNING: "cyan",
    JobStatus.COMPLETED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELED: "magenta",
}


class Email(BaseModel):
    to: EmailStr
    subject: str
    body: str = ""


class Flaky(BaseModel):
    name: str
    failure_rate: float = 0.6


class Report(BaseModel):
    pages: int


class Ping(BaseModel):
    source: str


def build_scheduler(db: Path) -> JobScheduler:
    # Every interval, TTL and timeout at the library's default: what the demo shows is what a
    # user gets. (`worker` only names it in the table; `max_concurrent_jobs` keeps the pool small
    # enough that the queue is visible.)
    scheduler = JobScheduler(SQLiteJobStorage(db), worker="demo-worker", max_concurrent_jobs=4)

    @scheduler.job("send-email", concurrency=2, priority=10)
    async def send_email(data: Email, ctx: JobContext) -> dict[str, str]:
        await ctx.log("info", f"sending {data.subject!r} to {data.to}")
        await asyncio.sleep(random.uniform(0.3, 1.2))
        return {"delivered_to": str(data.to)}

    @scheduler.job(
        "flaky-sync", concurrency=None, max_retries=3, backoff_strategy="linear", retry_delay=1
    )
    async def flaky(data: Flaky, ctx: JobContext) -> str:
        await asyncio.sleep(0.3)
        if random.random() < data.failure_rate:
            raise ConnectionError(f"upstream for {data.name} timed out (attempt {ctx.attempt})")
        return f"{data.name} synced on attempt {ctx.attempt}"

    @scheduler.job("build-report", concurrency=1, priority=-5)
    async def build_report(data: Report, ctx: JobContext) -> str:
        for page in range(1, data.pages + 1):
            await asyncio.sleep(0.4)
            await ctx.update_progress(100 * page / data.pages)
            if ctx.is_shutting_down:
                return f"stopped at page {page}"
        return f"{data.pages} pages"

    @scheduler.job("heartbeat-ping", concurrency=None)
    async def ping(data: Ping, ctx: JobContext) -> str:
        return f"pong from {data.source}"

    return scheduler


# The live table's layout. Rich pads each cell by one space on both sides, and this box draws a
# blank divider between columns and no outer edge: each column after the first costs 3 more.
_GAP = 3
# A job id and its status are always shown whole (an id is copied into other commands). The
# other columns are shown only when they fit whole beside them, most useful first; the result
# or error takes the room left over, and is only worth a column with room to say something.
_STATUS_WIDTH = max(len(status.value) for status in JobStatus)
_MIN_DETAIL_WIDTH = 20
_TYPE, _DETAIL, _TRY, _PROGRESS = "type", "result / last error", "try", "done"


def _optional_columns(width: int, id_width: int, type_width: int) -> set[str]:
    """The optional columns that fit on a terminal `width` characters wide."""
    used = id_width + _GAP + _STATUS_WIDTH
    shown: set[str] = set()
    for header, needed in (
        (_TYPE, type_width),
        (_DETAIL, _MIN_DETAIL_WIDTH),
        (_TRY, len(_TRY)),
        (_PROGRESS, len("100%")),
    ):
        if used + _GAP + needed <= width:
            shown.add(header)
            used += _GAP + needed
    return shown


def _detail(job: Job) -> str:
    detail = job.fail_reason if job.status == JobStatus.FAILED else job.result
    if job.status == JobStatus.PENDING and job.fail_reason:
        detail = f"retrying after: {job.fail_reason}"
    if detail is None:
        return ""
    return detail if isinstance(detail, str) else json.dumps(detail)


def _jobs_view(jobs: list[Job], remaining: float, width: int, type_width: int) -> RenderableType:
    """The live table for a terminal `width` wide; `type_width` is the longest registered
    type's name, so the layout does not change as the types on screen do."""
    title = f"timecrisis demo: worker running, {remaining:4.1f}s left"
    id_width = max((len(job.id) for job in jobs), default=len("job id"))
    if id_width + _GAP + _STATUS_WIDTH > width:
        # Too narrow for a table that keeps an id and its status whole: a line per job, which
        # the terminal wraps instead of rich cutting the cells.
        lines = [Text(title, style="bold")]
        lines += [
            Text.assemble(job.id, " ", (job.status.value, _STATUS_STYLE[job.status]))
            for job in jobs
        ]
        return Group(*lines)
    shown = _optional_columns(width, id_width, type_width)
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        header_style="bold",
        expand=_DETAIL in shown,  # the result column takes the room left over
    )
    table.add_column("job id", no_wrap=True)
    if _TYPE in shown:
        table.add_column(_TYPE, no_wrap=True)
    table.add_column("status", min_width=_STATUS_WIDTH, no_wrap=True)
    if _TRY in shown:
        table.add_column(_TRY, justify="right", no_wrap=True)
    if _PROGRESS in shown:
        table.add_column(_PROGRESS, justify="right", no_wrap=True)
    if _DETAIL in shown:
        table.add_column(_DETAIL, no_wrap=True, overflow="ellipsis", ratio=1)
    for job in jobs:
        # Text, not markup: a result or an error message may contain square brackets.
        cells = [Text(job.id)]
        if _TYPE in shown:
            cells.append(Text(job.type))
        cells.append(Text(job.status.value, style=_STATUS_STYLE[job.status]))
        if _TRY in shown:
            cells.append(Text(str(job.attempts)))
        if _PROGRESS in shown:
            cells.append(Text(f"{job.progress:.0f}%"))
        if _DETAIL in shown:
            cells.append(Text(_detail(job)))
        table.add_row(*cells)
    return table


def metrics_table(metrics: Metrics) -> Table:
    table = Table(
        title="metrics", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold"
    )
    # Type names whole; the headers of the number columns wrap instead when space is short.
    table.add_column("type", no_wrap=True)
    for column in ("pending", "running", "completed", "failed", "dead letter", "avg duration"):
        table.add_column(column, justify="right")

    def row(name: Text, m: Metrics | object) -> None:
        avg = getattr(m, "average_duration", None)
        table.add_row(
            name,
            *(
                str(getattr(m, f))
                for f in ("pending", "running", "completed", "failed", "dead_letter")
            ),
            "-" if avg is None else f"{avg:.2f}s",
        )

    for name, type_metrics in sorted(metrics.types.items()):
        row(Text(name), type_metrics)
    row(Text("all", style="bold"), metrics)
    return table


async def run_demo(db: Path, duration: float, console: Console) -> Metrics:
    scheduler = build_scheduler(db)
    emails = [
        {"to": f"user{i}@example.com", "subject": f"Welcome #{i}", "body": "Hi!"} for i in range(6)
    ]
    await scheduler.enqueue_many("send-email", emails)
    for name in ("crm", "billing", "search"):
        await scheduler.enqueue("flaky-sync", {"name": name})
    await scheduler.enqueue("build-report", {"pages": 12})
    await scheduler.schedule(
        "every-5-seconds",
        "heartbeat-ping",
        {"source": "cron"},
        schedule_type="cron",
        schedule_value="*/5 * * * * *",
    )
    await scheduler.schedule(
        "every-3-seconds",
        "heartbeat-ping",
        {"source": "interval"},
        schedule_type="interval",
        schedule_value="3s",
    )
    type_width = max(len(_TYPE), *(len(name) for name in scheduler.job_definitions))
    started = datetime.now(UTC)
    async with scheduler:
        with Live(console=console, refresh_per_second=8, transient=False) as live:
            while (elapsed := (datetime.now(UTC) - started).total_seconds()) < duration:
                jobs = await scheduler.list_jobs(limit=20)
                live.update(_jobs_view(jobs, duration - elapsed, console.width, type_width))
                await asyncio.sleep(0.25)
    metrics = await scheduler.get_metrics()
    await scheduler.close()
    return metrics


@click.command()
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("timecrisis-demo.db"),
    show_default=True,
    help="SQLite file to use (recreated on each run).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=1),
    default=15.0,
    show_default=True,
    help="Seconds to run the worker.",
)
def demo(db: Path, duration: float) -> None:
    """Run a worker on a SQLite file with sample jobs and schedules, showing a live view.

    \b
    Example:
      timecrisis demo --duration 10
    """
    console = Console()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    # The live table shows failures and retries; keep the library's log lines off the screen.
    logging.getLogger("timecrisis").addHandler(logging.NullHandler())
    logging.getLogger("timecrisis").propagate = False
    console.print(f"[bold]timecrisis demo[/] on [cyan]{db}[/] for {duration:.0f}s")
    metrics = asyncio.run(run_demo(db, duration, console))
    console.print()
    console.print(metrics_table(metrics))
    console.print("[green]demo finished[/]")
