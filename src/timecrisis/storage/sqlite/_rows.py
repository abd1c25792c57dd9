"""Conversions between SQLite rows and the records of `timecrisis.models` (and lists of values
into the one JSON parameter the statements of queries.sql read them from).

Records are built with pydantic validation, not `model_construct`: validation runs in
pydantic-core (Rust) and measured 6.5 µs per `Job` against 15.6 µs for the pure-Python
`model_construct` (pydantic 2.14, CPython 3.11), and it still catches a row that a future
migration got wrong.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from timecrisis.models import Job, JobLog, JobRun, ScheduledJob, WorkerInfo

Row = Sequence[Any]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# The `jobs` columns that make a `Job`, in the order `job_from_row` reads them: every statement
# of queries.sql that returns jobs lists them so (tests/sqlite/test_queries_file.py checks).
JOB_COLUMNS = (
    "id, type, data, status, priority, max_retries, attempts, backoff_strategy, entity_id, "
    "scheduled_job_id, unique_key, run_at, expires_at, progress, fail_reason, result, "
    "created_at, started_at, finished_at, worker, dead_lettered, retry_delay, max_retry_delay, "
    "failure_kind, headers, concurrency_key, queue, cancel_requested"
)
JOB_COLUMN_COUNT = JOB_COLUMNS.count(",") + 1
"""Where the extra columns of a `SELECT {JOB_COLUMNS}, ...` start."""

# ---- times -----------------------------------------------------------------------------------


def to_us(value: datetime) -> int:
    """An aware datetime as integer microseconds since the epoch (exact: no float rounding)."""
    if value.tzinfo is None:  # the store only ever holds aware times; a naive one is a bug
        raise ValueError(f"naive datetime reached the SQLite store: {value!r}")
    return (value - EPOCH) // _MICROSECOND


def opt_us(value: datetime | None) -> int | None:
    return None if value is None else to_us(value)


def from_us(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def opt_dt(value: int | None) -> datetime | None:
    return None if value is None else EPOCH + timedelta(microseconds=value)


def load_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


# ---- lists of values -----------------------------------------------------------------------


def json_array(values: Iterable[str | int]) -> str:
    """Values bound as one JSON array, read in SQL with `json_each(?)`: one statement text for
    any number of values (see queries.sql)."""
    return json.dumps(list(values), separators=(",", ":"), ensure_ascii=False)


# ---- records ---------------------------------------------------------------------------------


def job_from_row(r: Row) -> Job:
    """A `Job` from a row that starts with `JOB_COLUMNS` (extra columns may follow)."""
    return Job.model_validate(
        {
            "id": r[0],
            "type": r[1],
            "data": json.loads(r[2]),
            "status": r[3],
            "priority": r[4],
            "max_retries": r[5],
            "attempts": r[6],
            "backoff_strategy": r[7],
            "entity_id": r[8],
            "scheduled_job_id": r[9],
            "unique_key": r[10],
            "run_at": from_us(r[11]),
            "expires_at": opt_dt(r[12]),
            "progress": r[13],
            "fail_reason": r[14],
            "result": None if r[15] is None else json.loads(r[15]),
            "created_at": from_us(r[16]),
            "started_at": opt_dt(r[17]),
            "finished_at": opt_dt(r[18]),
            "worker": r[19],
            "dead_lettered": bool(r[20]),
            "retry_delay": r[21],
            "max_retry_delay": r[22],
            "failure_kind": r[23],
            "headers": load_json(r[24]),
            "concurrency_key": r[25],
            "queue": r[26],
            "cancel_requested": bool(r[27]) and r[3] == "running",
        }
    )


def run_from_row(row: Row) -> JobRun:
    return JobRun.model_validate(
        {
            "id": row[0],
            "job_id": row[1],
            "attempt": row[2],
            "status": row[3],
            "worker": row[4],
            "started_at": from_us(row[5]),
            "finished_at": opt_dt(row[6]),
            "duration": row[7],
            "progress": row[8],
            "error": row[9],
            "traceback": row[10],
            "failure_kind": row[11],
        }
    )


def log_from_row(row: Row) -> JobLog:
    return JobLog.model_validate(
        {
            "job_id": row[0],
            "run_id": row[1],
            "timestamp": from_us(row[2]),
            "level": row[3],
            "message": row[4],
            "metadata": load_json(row[5]),
        }
    )


def schedule_from_row(row: Row) -> ScheduledJob:
    return ScheduledJob.model_validate(
        {
            "id": row[0],
            "name": row[1],
            "type": row[2],
            "data": json.loads(row[3]),
            "schedule_type": row[4],
            "schedule_value": row[5],
            "time_zone": row[6],
            "enabled": bool(row[7]),
            "allow_overlap": bool(row[8]),
            "next_run_at": opt_dt(row[9]),
            "last_scheduled_at": opt_dt(row[10]),
            "created_at": from_us(row[11]),
            "updated_at": from_us(row[12]),
            "priority": row[13],
            "max_retries": row[14],
            "backoff_strategy": row[15],
            "retry_delay": row[16],
            "max_retry_delay": row[17],
            "queue": row[18],
        }
    )


def worker_from_row(row: Row) -> WorkerInfo:
    """Columns in the order of `list_workers` (queries.sql), `running` counted by the query."""
    return WorkerInfo(
        name=row[0],
        first_seen=from_us(row[1]),
        last_heartbeat=from_us(row[2]),
        is_leader=bool(row[3]),
        running=row[4],
        expires_at=opt_dt(row[5]),
    )


def fetch_jobs(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> list[Job]:
    return [job_from_row(row) for row in conn.execute(sql, args)]
