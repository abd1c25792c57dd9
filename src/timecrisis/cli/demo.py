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
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

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
    scheduler = JobScheduler(
        SQLiteJobStorage(db),
        worker="demo-worker",
        max_concurrent_jobs=4,
        job_processing_interval=1,
        job_scheduling_interval=1,
        leader_lock_ttl=6,
        shutdown_timeout=3,
    )

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


def _jobs_table(jobs: list[Job], remaining: float) -> Table:
    table = Table(title=f"timecrisis demo: worker running, {remaining:4.1f}s left", expand=True)
    table.add_column("job id", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("try", justify="right", no_wrap=True)
    table.add_column("progress", justify="right", no_wrap=True)
    table.add_column("result / last error", no_wrap=True, overflow="ellipsis", ratio=1)
    for job in jobs:
        style = _STATUS_STYLE[job.status]
        detail = job.fail_reason if job.status == JobStatus.FAILED else job.result
        if job.status == JobStatus.PENDING and job.fail_reason:
            detail = f"retrying after: {job.fail_reason}"
        table.add_row(
            job.id,
            job.type,
            f"[{style}]{job.status.value}[/]",
            str(job.attempts),
            f"{job.progress:.0f}%",
            "" if detail is None else json.dumps(detail) if not isinstance(detail, str) else detail,
        )
    return table


def metrics_table(metrics: Metrics) -> Table:
    table = Table(title="metrics")
    table.add_column("type")
    for column in ("pending", "running", "completed", "failed", "dead letter", "avg duration"):
        table.add_column(column, justify="right")

    def row(name: str, m: Metrics | object) -> None:
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
        row(name, type_metrics)
    row("[bold]all[/]", metrics)
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
    started = datetime.now(UTC)
    async with scheduler:
        with Live(console=console, refresh_per_second=8, transient=False) as live:
            while (elapsed := (datetime.now(UTC) - started).total_seconds()) < duration:
                jobs = await scheduler.list_jobs(limit=20)
                live.update(Group(_jobs_table(jobs, duration - elapsed)))
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
