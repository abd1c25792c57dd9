"""`timecrisis jobs ...`: look into jobs and repair them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta

import click
from rich.text import Text

from timecrisis.cli._errors import fail
from timecrisis.cli._output import (
    Cell,
    dump,
    make_console,
    print_fields,
    print_json,
    print_json_line,
    print_listing,
    status_text,
    timestamp,
)
from timecrisis.cli._params import (
    DURATION,
    FINISHED_STATUS_NAMES,
    JOB_STATUSES,
    cursor_option,
    json_option,
    limit_option,
)
from timecrisis.cli._store import storage_option, with_scheduler
from timecrisis.cli._views import (
    RUN_COLUMNS,
    attempts,
    attempts_by_run,
    last_traceback,
    log_line,
    print_jobs,
    run_row,
)
from timecrisis.errors import JobNotFoundError
from timecrisis.models import FINISHED_STATUSES, Job, JobLog, JobRun
from timecrisis.scheduler import JobScheduler

# `jobs show` prints the tail of the log; `jobs logs` prints all of it.
_SHOW_LOG_LINES = 20


@click.group(short_help="List, inspect and repair jobs.")
def jobs() -> None:
    """Look into jobs and repair them: list, show, logs, retry, cancel, purge.

    Each subcommand takes --storage URL (else $TIMECRISIS_STORAGE) after its own name.

    \b
    Examples:
      timecrisis jobs list --status failed --storage sqlite:///app.db
      timecrisis jobs show 0f8c0a3e-5d7b-4a43-9e43-2f1f4c9e3b52 --storage sqlite:///app.db
    """


@jobs.command("list")
@storage_option()
@click.option("--status", type=click.Choice(JOB_STATUSES), help="Only jobs in this status.")
@click.option("--type", "job_type", metavar="TYPE", help="Only jobs of this type.")
@click.option("--entity", "entity_id", metavar="ENTITY_ID", help="Only jobs for this entity.")
@limit_option()
@cursor_option()
@json_option()
def list_jobs(
    storage_url: str,
    status: str | None,
    job_type: str | None,
    entity_id: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List jobs, newest first.

    \b
    Examples:
      timecrisis jobs list --storage sqlite:///app.db
      timecrisis jobs list --status failed --type send-email --limit 20
      timecrisis jobs list --cursor 0f8c...  # the next page: the last id of this one
      timecrisis jobs list --status pending --json | jq -r '.[].id'
    """

    async def read(scheduler: JobScheduler) -> list[Job]:
        return await scheduler.list_jobs(
            status=status, type=job_type, entity_id=entity_id, limit=limit, cursor=cursor
        )

    print_job_page(storage_url, read, limit=limit, cursor=cursor, as_json=as_json, empty="no jobs")


def print_job_page(
    storage_url: str,
    read: Callable[[JobScheduler], Awaitable[list[Job]]],
    *,
    limit: int,
    cursor: str | None,
    as_json: bool,
    empty: str,
) -> None:
    """One page of a newest-first job listing (`jobs list`, `dead-letters`): `read` fetches it,
    an unknown cursor fails, and a full page says how to ask for the next one."""

    async def fetch(scheduler: JobScheduler) -> list[Job]:
        found = await read(scheduler)
        await check_cursor(scheduler, cursor, found)
        return found

    found = with_scheduler(storage_url, fetch)
    if as_json:
        print_json([dump(job) for job in found])
        return
    print_jobs(make_console(), found, title=None, empty=empty)
    if len(found) == limit:
        click.echo(f"more may follow: add --cursor {found[-1].id}", err=True)


async def check_cursor(scheduler: JobScheduler, cursor: str | None, found: list[Job]) -> None:
    """An unknown cursor pages to nothing: say so (exit 1) rather than print "no jobs", which
    would read as the end of the list. (A known cursor on the last page is a true empty page.)"""
    if cursor is not None and not found and await scheduler.get_job(cursor) is None:
        fail(f"unknown cursor {cursor!r}: pass the id of the last job of the previous page")


@jobs.command("show", short_help="Show a job, its runs and its logs.")
@click.argument("job_id", metavar="ID")
@storage_option()
@json_option("Print the job, its runs and its logs as one JSON document.")
def show_job(job_id: str, storage_url: str, as_json: bool) -> None:
    """Show a job: its fields, every run (attempt) and its latest log lines.

    \b
    Examples:
      timecrisis jobs show 0f8c0a3e-5d7b-4a43-9e43-2f1f4c9e3b52
      timecrisis jobs show 0f8c0a3e-5d7b-4a43-9e43-2f1f4c9e3b52 --json | jq .runs
    """

    async def fetch(scheduler: JobScheduler) -> tuple[Job, list[JobRun], list[JobLog]]:
        job = await _get_job(scheduler, job_id)
        return job, await scheduler.get_job_runs(job_id), await scheduler.get_job_logs(job_id)

    job, runs, logs = with_scheduler(storage_url, fetch)
    if as_json:
        print_json(
            {
                "job": dump(job),
                "runs": [dump(r) for r in runs],
                "logs": [dump(entry) for entry in logs],
            }
        )
        return
    console = make_console()
    print_fields(console, _job_fields(job))
    console.print()
    print_listing(
        console, RUN_COLUMNS, [run_row(r) for r in runs], title="runs", empty="no runs yet"
    )
    console.print()
    failed = last_traceback(runs)
    if failed is not None and failed.traceback is not None:
        console.print(f"traceback of attempt {failed.attempt}", style="bold")
        # Text, not markup: a traceback is full of brackets rich would otherwise interpret.
        console.print(Text(failed.traceback.rstrip()), soft_wrap=True)
        console.print()
    if not logs:
        console.print("no log lines", style="dim")
        return
    console.print("logs", style="bold")
    if len(logs) > _SHOW_LOG_LINES:
        console.print(
            f"({len(logs) - _SHOW_LOG_LINES} earlier lines: timecrisis jobs logs {job.id})",
            style="dim",
            soft_wrap=True,
        )
    by_run = attempts_by_run(runs)
    for entry in logs[-_SHOW_LOG_LINES:]:
        console.print(log_line(entry, by_run), soft_wrap=True)


def _job_fields(job: Job) -> list[tuple[str, Cell]]:
    def text(value: object) -> str:
        return "-" if value is None else str(value)

    def as_json(value: object) -> str:
        return json.dumps(value, ensure_ascii=False)

    fields: list[tuple[str, Cell]] = [
        ("id", job.id),
        ("type", job.type),
        ("status", status_text(job.status)),
        ("dead letter", "yes" if job.dead_lettered else "no"),
        ("priority", str(job.priority)),
        ("attempts", f"{attempts(job)} ({job.backoff_strategy} backoff)"),
        ("progress", f"{job.progress:.0f}%"),
        ("entity", text(job.entity_id)),
        ("schedule", text(job.scheduled_job_id)),
        ("unique key", text(job.unique_key)),
        ("worker", text(job.worker)),
        ("created (UTC)", timestamp(job.created_at)),
        ("run at (UTC)", timestamp(job.run_at)),
        ("started (UTC)", timestamp(job.started_at)),
        ("finished (UTC)", timestamp(job.finished_at)),
        ("expires (UTC)", timestamp(job.expires_at)),
        ("fail reason", text(job.fail_reason)),
        ("failure kind", text(job.failure_kind)),
        ("result", as_json(job.result)),
        ("data", as_json(job.data)),
    ]
    return fields


@jobs.command("logs", short_help="Print (or follow) a job's log lines.")
@click.argument("job_id", metavar="ID")
@storage_option()
@click.option(
    "--follow", "-f", is_flag=True, help="Keep printing new lines until the job finishes."
)
@click.option(
    "--interval",
    type=DURATION,
    default="1s",
    show_default=True,
    help="How often --follow looks for new lines.",
)
@json_option("Print one JSON object per log line (JSON Lines).")
def job_logs(
    job_id: str, storage_url: str, follow: bool, interval: timedelta, as_json: bool
) -> None:
    """Print a job's log lines (what its handler logged with ctx.log), oldest first.

    Each line shows the time (UTC), the level, #N the attempt that logged it, the message and
    its metadata. With --follow, new lines are printed as they arrive until the job is
    completed, failed or canceled (or Ctrl-C).

    \b
    Examples:
      timecrisis jobs logs 0f8c0a3e-5d7b-4a43-9e43-2f1f4c9e3b52
      timecrisis jobs logs 0f8c0a3e-5d7b-4a43-9e43-2f1f4c9e3b52 --follow
      timecrisis jobs logs 0f8c0a3e-5d7b-4a43-9e43-2f1f4c9e3b52 --json | jq -r .message
    """
    console = make_console()

    async def stream(scheduler: JobScheduler) -> None:
        printed = 0
        while True:
            job = await _get_job(scheduler, job_id)
            # Read the logs after the job: once it is seen finished, no line can follow.
            entries = await scheduler.get_job_logs(job_id)
            runs = await scheduler.get_job_runs(job_id) if not as_json else []
            by_run = attempts_by_run(runs)
            for entry in entries[printed:]:
                if as_json:
                    print_json_line(dump(entry))
                else:
                    console.print(log_line(entry, by_run), soft_wrap=True)
            printed = max(printed, len(entries))
            if not follow or job.status in FINISHED_STATUSES:
                return
            await asyncio.sleep(interval.total_seconds())

    try:
        with_scheduler(storage_url, stream)
    except KeyboardInterrupt:  # the way out of --follow
        return


@jobs.command("retry", short_help="Put a failed job back to pending.")
@click.argument("job_id", metavar="ID")
@storage_option()
def retry_job(job_id: str, storage_url: str) -> None:
    """Put a failed (or canceled) job back to pending with a fresh set of attempts.

    Its past runs and logs stay in its history. Fails for a job that is pending, running or
    completed.

    \b
    Example:
      timecrisis jobs retry 0f8c0a3e-5d7b-4a43-9e43-2f1f4c9e3b52
    """

    async def act(scheduler: JobScheduler) -> None:
        if await scheduler.retry_job(job_id):
            return
        job = await _get_job(scheduler, job_id)
        fail(f"job {job_id} is {job.status.value}: only failed or canceled jobs can be retried")

    with_scheduler(storage_url, act)
    click.echo(f"job {job_id} is pending again")


@jobs.command("cancel", short_help="Cancel a pending or running job.")
@click.argument("job_id", metavar="ID")
@click.option(
    "--terminate",
    is_flag=True,
    help="Do not wait for a running handler: cancel an async one's task, kill a fork-mode child.",
)
@storage_option()
def cancel_job(job_id: str, terminate: bool, storage_url: str) -> None:
    """Cancel a pending job, or ask a running one to stop.

    A running job's handler sees ctx.is_cancelled and the job ends canceled when the handler
    returns; it never runs again (retry it to run it again). With --terminate its worker
    interrupts it instead (an async handler gets asyncio.CancelledError, a fork-mode child is
    killed; a sync handler's thread cannot be) when it next renews its leases. Fails for a job
    that already finished.

    \b
    Example:
      timecrisis jobs cancel 0f8c0a3e-5d7b-4a43-9e43-2f1f4c9e3b52
      timecrisis jobs cancel --terminate 0f8c0a3e-5d7b-4a43-9e43-2f1f4c9e3b52
    """

    async def act(scheduler: JobScheduler) -> str:
        outcome = await scheduler.storage.cancel_job(job_id, terminate=terminate)
        if outcome == "not_found":
            raise JobNotFoundError(job_id)
        if outcome == "not_cancellable":
            job = await _get_job(scheduler, job_id)
            fail(
                f"job {job_id} is already {job.status.value}: only pending or running jobs "
                "can be canceled"
            )
        return outcome

    outcome = with_scheduler(storage_url, act)
    if outcome == "canceled":
        click.echo(f"job {job_id} canceled")
    elif terminate:
        click.echo(
            f"job {job_id} is running: cancel requested, its worker interrupts the handler and "
            "it ends canceled"
        )
    else:
        click.echo(
            f"job {job_id} is running: cancel requested, it ends canceled when its handler returns"
        )


@jobs.command("purge", short_help="Delete old finished jobs.")
@storage_option()
@click.option(
    "--status",
    "statuses",
    type=click.Choice(FINISHED_STATUS_NAMES),
    multiple=True,
    help="Only jobs in this status (repeatable). Default: completed, failed and canceled.",
)
@click.option(
    "--older-than",
    type=DURATION,
    required=True,
    help="Only jobs that finished longer ago than this (30, 10m, 12h, 7d; 0 for all).",
)
@json_option('Print {"deleted": N}.')
def purge_jobs(
    storage_url: str, statuses: tuple[str, ...], older_than: timedelta, as_json: bool
) -> None:
    """Delete finished jobs (with their runs and logs) that finished before a cut-off.

    Pending and running jobs are never deleted. (The leader also prunes finished jobs older than
    the scheduler's job_retention on its own.)

    \b
    Examples:
      timecrisis jobs purge --status completed --older-than 7d
      timecrisis jobs purge --status failed --status canceled --older-than 30d
    """

    async def act(scheduler: JobScheduler) -> int:
        return await scheduler.purge_jobs(status=list(statuses) or None, older_than=older_than)

    deleted = with_scheduler(storage_url, act)
    if as_json:
        print_json({"deleted": deleted})
    else:
        click.echo(f"deleted {deleted} job{'' if deleted == 1 else 's'}")


async def _get_job(scheduler: JobScheduler, job_id: str) -> Job:
    job = await scheduler.get_job(job_id)
    if job is None:
        raise JobNotFoundError(job_id)
    return job
