"""Conversions from PostgreSQL rows (as dicts, by column name) to the records of
`timecrisis.models`. Times come back in the session's time zone; records carry UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from timecrisis.models import (
    FailureKind,
    Job,
    JobLog,
    JobRun,
    JobStatus,
    RunStatus,
    ScheduledJob,
    WorkerInfo,
)

Row = dict[str, Any]


def utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def opt_utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def job_from_row(row: Row) -> Job:
    # Not validated: every value was written by this store from validated input, and the claim
    # path builds a record per job, so validation would only cost time. A copy of a template
    # with every field replaced (`model_copy(update=...)`, public and unvalidated like
    # `model_construct`) is the same record at half the cost: `model_construct` walks the
    # fields in Python, the copy is two dict operations (4 against 7.5 us; docs/performance.md).
    return _JOB.model_copy(
        update={
            "id": row["id"],
            "type": row["type"],
            "data": row["data"],
            "status": JobStatus(row["status"]),
            "priority": row["priority"],
            "max_retries": row["max_retries"],
            "attempts": row["attempts"],
            "backoff_strategy": row["backoff_strategy"],
            "entity_id": row["entity_id"],
            "scheduled_job_id": row["scheduled_job_id"],
            "unique_key": row["unique_key"],
            "run_at": utc(row["run_at"]),
            "expires_at": opt_utc(row["expires_at"]),
            "progress": row["progress"],
            "fail_reason": row["fail_reason"],
            "result": row["result"],
            "created_at": utc(row["created_at"]),
            "started_at": opt_utc(row["started_at"]),
            "finished_at": opt_utc(row["finished_at"]),
            "worker": row["worker"],
            "dead_lettered": row["dead_lettered"],
            "retry_delay": row["retry_delay"],
            "max_retry_delay": row["max_retry_delay"],
            "failure_kind": _kind(row["failure_kind"]),
            "headers": row["headers"],
            "concurrency_key": row["concurrency_key"],
            "queue": row["queue"],
            "cancel_requested": row["cancel_requested"] and row["status"] == "running",
        }
    )


# What `job_from_row` copies: every field set (each copy replaces them all), so that a copy's
# `model_fields_set` is every field, as `model_construct` with every field gives.
_JOB = Job.model_construct(
    **{name: field.get_default() for name, field in Job.model_fields.items()}
    | {
        "id": "",
        "type": "",
        "data": None,
        "status": JobStatus.PENDING,
        "priority": 0,
        "max_retries": 0,
        "attempts": 0,
        "backoff_strategy": "exponential",
        "run_at": datetime.min.replace(tzinfo=UTC),
        "created_at": datetime.min.replace(tzinfo=UTC),
    }
)


def _kind(value: str | None) -> FailureKind | None:
    return None if value is None else FailureKind(value)


def run_from_row(row: Row) -> JobRun:
    return JobRun.model_construct(
        id=row["id"],
        job_id=row["job_id"],
        attempt=row["attempt"],
        status=RunStatus(row["status"]),
        worker=row["worker"],
        started_at=utc(row["started_at"]),
        finished_at=opt_utc(row["finished_at"]),
        duration=row["duration"],
        progress=row["progress"],
        error=row["error"],
        traceback=row["traceback"],
        failure_kind=_kind(row["failure_kind"]),
    )


def log_from_row(row: Row) -> JobLog:
    return JobLog.model_construct(
        job_id=row["job_id"],
        run_id=row["run_id"],
        timestamp=utc(row["timestamp"]),
        level=row["level"],
        message=row["message"],
        metadata=row["metadata"],
    )


def schedule_from_row(row: Row) -> ScheduledJob:
    return ScheduledJob.model_construct(
        id=row["id"],
        name=row["name"],
        type=row["type"],
        data=row["data"],
        schedule_type=row["schedule_type"],
        schedule_value=row["schedule_value"],
        time_zone=row["time_zone"],
        enabled=row["enabled"],
        allow_overlap=row["allow_overlap"],
        next_run_at=opt_utc(row["next_run_at"]),
        last_scheduled_at=opt_utc(row["last_scheduled_at"]),
        created_at=utc(row["created_at"]),
        updated_at=utc(row["updated_at"]),
        priority=row["priority"],
        max_retries=row["max_retries"],
        backoff_strategy=row["backoff_strategy"],
        retry_delay=row["retry_delay"],
        max_retry_delay=row["max_retry_delay"],
        queue=row["queue"],
    )


def worker_from_row(row: Row) -> WorkerInfo:
    return WorkerInfo(
        name=row["name"],
        first_seen=utc(row["first_seen"]),
        last_heartbeat=utc(row["last_heartbeat"]),
        is_leader=row["is_leader"],
        running=row["running"],
        expires_at=opt_utc(row["expires_at"]),
    )
