"""How records look on a terminal: the columns and cells of jobs, runs and log lines."""

from __future__ import annotations

import json
from collections.abc import Sequence

from rich.console import Console
from rich.text import Text

from timecrisis.cli._output import (
    Cell,
    Column,
    print_listing,
    seconds,
    status_text,
    timestamp,
)
from timecrisis.models import Job, JobLog, JobRun, JobStatus, JsonValue

_SUMMARY_LENGTH = 80
LOG_LEVEL_STYLES = {"debug": "dim", "info": "", "warn": "yellow", "error": "red"}

# Type and status are key columns too: they are what a reader scans a listing by, and a type
# folded as "heartbeat-pin / g" reads as two words.
JOB_COLUMNS = (
    Column("id", key=True),
    Column("type", key=True),
    Column("status", key=True),
    Column("attempts", justify="right"),
    Column("created (UTC)"),
    Column("detail"),
)

RUN_COLUMNS = (
    Column("attempt", justify="right"),
    Column("status", key=True),
    Column("worker"),
    Column("started (UTC)"),
    Column("duration", justify="right"),
    Column("progress", justify="right"),
    Column("kind"),
    Column("error"),
)


def attempts(job: Job) -> str:
    """`used/allowed`: max_retries=3 allows 4 attempts."""
    return f"{job.attempts}/{job.max_retries + 1}"


def summary(value: JsonValue) -> str:
    """A result or payload on one line, shortened: the full value is in `jobs show`/`--json`."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _SUMMARY_LENGTH else text[: _SUMMARY_LENGTH - 1] + "…"


def job_detail(job: Job) -> str:
    """What an operator wants to know next about a job, given its status."""
    if job.status == JobStatus.RUNNING:
        return f"{job.progress:.0f}% on {job.worker or '?'}"
    if job.status == JobStatus.PENDING:
        if job.fail_reason:
            return f"retry at {timestamp(job.run_at)} after: {job.fail_reason}"
        if job.attempts == 0 and job.started_at is None and job.run_at > job.created_at:
            return f"runs at {timestamp(job.run_at)}"
        return ""
    if job.status == JobStatus.FAILED:
        return job.fail_reason or ""
    if job.status == JobStatus.COMPLETED and job.result is not None:
        return summary(job.result)
    return ""


def job_row(job: Job) -> list[Cell]:
    return [
        job.id,
        job.type,
        status_text(job.status),
        attempts(job),
        timestamp(job.created_at),
        job_detail(job),
    ]


def print_jobs(console: Console, jobs: Sequence[Job], *, title: str | None, empty: str) -> None:
    print_listing(console, JOB_COLUMNS, [job_row(job) for job in jobs], title=title, empty=empty)


def run_row(run: JobRun) -> list[Cell]:
    return [
        str(run.attempt),
        status_text(run.status),
        run.worker,
        timestamp(run.started_at),
        seconds(run.duration),
        f"{run.progress:.0f}%",
        run.failure_kind or "",
        run.error or "",
    ]


def log_line(log: JobLog, attempt_by_run: dict[str, int]) -> Text:
    """`2024-05-01 12:00:03 INFO  #2 message {"metadata": ...}`; #N is the attempt."""
    line = Text(f"{timestamp(log.timestamp)} ")
    line.append(f"{log.level.upper():<5}", style=LOG_LEVEL_STYLES.get(log.level, ""))
    attempt = attempt_by_run.get(log.run_id) if log.run_id is not None else None
    line.append(f" #{attempt}" if attempt is not None else " --", style="dim")
    line.append(f" {log.message}")
    if log.metadata:
        line.append(f" {json.dumps(log.metadata, ensure_ascii=False)}", style="dim")
    return line


def last_traceback(runs: Sequence[JobRun]) -> JobRun | None:
    """The latest run that failed with a traceback: what `jobs show` prints in full (earlier
    ones are in `--json`)."""
    return next((run for run in reversed(runs) if run.traceback), None)


def attempts_by_run(runs: Sequence[JobRun]) -> dict[str, int]:
    return {run.id: run.attempt for run in runs}
