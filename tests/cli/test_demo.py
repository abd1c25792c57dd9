"""`timecrisis demo`: the live table keeps every job id and status whole at any terminal width,
dropping the less useful columns first when the terminal is narrow."""

from __future__ import annotations

import io
import pathlib
import re
import uuid
from datetime import UTC, datetime

from rich.console import Console

from tests.cli.support import run_cli
from timecrisis import InMemoryJobStorage, Job, JobScheduler, JobStatus
from timecrisis.cli.demo import _jobs_view, build_scheduler

NOW = datetime(2025, 1, 1, tzinfo=UTC)
TYPE_WIDTH = len("heartbeat-ping")  # the demo's longest type
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _job(job_type: str, status: JobStatus, **fields: object) -> Job:
    return Job.model_validate(
        {
            "id": str(uuid.uuid4()),
            "type": job_type,
            "data": {},
            "status": status,
            "priority": 1,
            "max_retries": 3,
            "attempts": 1,
            "backoff_strategy": "linear",
            "run_at": NOW,
            "created_at": NOW,
            **fields,
        }
    )


JOBS = [
    _job("heartbeat-ping", JobStatus.COMPLETED, result="pong from cron", progress=100),
    _job("build-report", JobStatus.RUNNING, progress=42),
    _job(
        "flaky-sync",
        JobStatus.PENDING,
        attempts=2,
        fail_reason="ConnectionError: upstream for [crm] timed out (attempt 2)",
    ),
    _job("send-email", JobStatus.CANCELED),
    _job("send-email", JobStatus.FAILED, fail_reason="RuntimeError: no route"),
]


def _render(width: int) -> list[str]:
    console = Console(width=width, color_system=None, file=io.StringIO())
    with console.capture() as captured:
        console.print(_jobs_view(JOBS, 3.0, width, TYPE_WIDTH))
    return captured.get().splitlines()


def _header(lines: list[str]) -> str:
    return next(line for line in lines if line.startswith("job id"))


def _assert_ids_and_statuses_whole(lines: list[str], width: int) -> None:
    for job in JOBS:
        [row] = [line for line in lines if job.id in line]  # whole, on one line
        assert re.search(rf"\b{job.status.value}\b", row), row
    assert all(len(line.rstrip()) <= width for line in lines)


def test_at_80_columns_ids_statuses_types_and_attempts_fit_and_the_result_is_dropped() -> None:
    lines = _render(80)
    _assert_ids_and_statuses_whole(lines, 80)
    assert _header(lines).split() == ["job", "id", "type", "status", "try", "done"]
    assert all(job.type in "\n".join(lines) for job in JOBS)


def test_a_wide_terminal_shows_every_column_and_the_whole_result() -> None:
    lines = _render(200)
    _assert_ids_and_statuses_whole(lines, 200)
    header = _header(lines)
    assert header.split()[:6] == ["job", "id", "type", "status", "try", "done"]
    assert "result / last error" in header
    text = "\n".join(lines)
    # Square brackets in a message are data, not rich markup.
    assert "retrying after: ConnectionError: upstream for [crm] timed out (attempt 2)" in text
    assert "RuntimeError: no route" in text


def test_at_100_columns_the_result_comes_before_the_attempt_and_progress() -> None:
    lines = _render(100)
    _assert_ids_and_statuses_whole(lines, 100)
    assert _header(lines).split() == [
        *("job", "id", "type", "status", "try"),
        *("result", "/", "last", "error"),
    ]


def test_too_narrow_for_a_table_prints_a_line_per_job_that_the_terminal_wraps() -> None:
    lines = _render(40)
    for job in JOBS:
        at = next(i for i, line in enumerate(lines) if job.id in line)
        assert job.status.value in " ".join(lines[at : at + 2])


def test_the_demo_runs_at_80_columns_without_cutting_ids(tmp_path: pathlib.Path) -> None:
    # Piped (not a terminal): rich prints the last frame of the live view, then the metrics.
    result = run_cli("demo", "--duration", "1", "--db", str(tmp_path / "demo.db"), COLUMNS="80")
    assert result.code == 0, result
    lines = result.stdout.splitlines()
    assert "demo finished" in lines[-1]
    rows = [line for line in lines if UUID.match(line)]
    assert rows, result.stdout  # the enqueued jobs are listed...
    for row in rows:  # ...each with its whole id and a whole status
        job_id, *_ = row.split()
        assert UUID.fullmatch(job_id), row
        assert any(status.value in row.split() for status in JobStatus), row
    assert all(len(line) <= 80 for line in lines)
    assert "…" not in result.stdout


def test_the_demo_runs_at_the_librarys_defaults(tmp_path: pathlib.Path) -> None:
    # What the demo shows is what a user gets: no interval, TTL or timeout tuned (only the
    # worker's name and the size of its pool, which change no loop's pace).
    demo = build_scheduler(tmp_path / "demo.db")
    plain = JobScheduler(
        InMemoryJobStorage(), max_concurrent_jobs=demo.settings.max_concurrent_jobs
    )
    assert demo.settings == plain.settings
