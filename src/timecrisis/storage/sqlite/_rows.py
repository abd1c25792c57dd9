"""Conversions between SQLite rows and the records of `timecrisis.models`."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

from timecrisis.models import (
    Job,
    JobLog,
    JobRun,
    JobStatus,
    RunStatus,
    ScheduledJob,
    WorkerInfo,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

JOB_COLUMNS = (
    "id, type, data, status, priority, max_retries, attempts, backoff_strategy, entity_id, "
    "scheduled_job_id, unique_key, run_at, expires_at, progress, fail_reason, result, "
    "created_at, started_at, finished_at, worker, dead_lettered, retry_delay, max_retry_delay"
)
RUN_COLUMNS = (
    "id, job_id, attempt, status, worker, started_at, finished_at, duration, progress, error"
)
SCHEDULE_COLUMNS = (
    "id, name, type, data, schedule_type, schedule_value, time_zone, enabled, allow_overlap, "
    "next_run_at, last_scheduled_at, created_at, updated_at"
)


def to_us(value: datetime) -> int:
    """An aware datetime as integer microseconds since the epoch (exact, no float rounding)."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime reached the SQLite store: {value!r}")
    return (value - EPOCH) // _MICROSECOND


def opt_us(value: datetime | None) -> int | None:
    return None if value is None else to_us(value)


def from_us(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def opt_dt(value: int | None) -> datetime | None:
    return None if value is None else from_us(value)


def load_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def job_from_row(row: sqlite3.Row | tuple[Any, ...]) -> Job:
    # model_construct: the row was written by this store from validated values; validating it
    # again on every read would only cost time on the hot path.
    return Job.model_construct(
        id=row[0],
        type=row[1],
        data=json.loads(row[2]),
        status=JobStatus(row[3]),
        priority=row[4],
        max_retries=row[5],
        attempts=row[6],
        backoff_strategy=row[7],
        entity_id=row[8],
        scheduled_job_id=row[9],
        unique_key=row[10],
        run_at=from_us(row[11]),
        expires_at=opt_dt(row[12]),
        progress=row[13],
        fail_reason=row[14],
        result=load_json(row[15]),
        created_at=from_us(row[16]),
        started_at=opt_dt(row[17]),
        finished_at=opt_dt(row[18]),
        worker=row[19],
        dead_lettered=bool(row[20]),
        retry_delay=row[21],
        max_retry_delay=row[22],
    )


def run_from_row(row: tuple[Any, ...]) -> JobRun:
    return JobRun.model_construct(
        id=row[0],
        job_id=row[1],
        attempt=row[2],
        status=RunStatus(row[3]),
        worker=row[4],
        started_at=from_us(row[5]),
        finished_at=opt_dt(row[6]),
        duration=row[7],
        progress=row[8],
        error=row[9],
    )


def log_from_row(row: tuple[Any, ...]) -> JobLog:
    return JobLog.model_construct(
        job_id=row[0],
        run_id=row[1],
        timestamp=from_us(row[2]),
        level=row[3],
        message=row[4],
        metadata=load_json(row[5]),
    )


def schedule_from_row(row: tuple[Any, ...]) -> ScheduledJob:
    return ScheduledJob.model_construct(
        id=row[0],
        name=row[1],
        type=row[2],
        data=json.loads(row[3]),
        schedule_type=row[4],
        schedule_value=row[5],
        time_zone=row[6],
        enabled=bool(row[7]),
        allow_overlap=bool(row[8]),
        next_run_at=opt_dt(row[9]),
        last_scheduled_at=opt_dt(row[10]),
        created_at=from_us(row[11]),
        updated_at=from_us(row[12]),
    )


def worker_from_row(row: tuple[Any, ...]) -> WorkerInfo:
    return WorkerInfo(
        name=row[0],
        first_seen=from_us(row[1]),
        last_heartbeat=from_us(row[2]),
        is_leader=bool(row[3]),
        running=row[4],
    )
