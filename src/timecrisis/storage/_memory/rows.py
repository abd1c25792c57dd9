"""Mutable rows of the in-memory store, and their conversion to the immutable public records.

Payloads, results and log metadata are kept as JSON text, exactly as the SQL stores keep them:
values round-trip through the same encoder, nothing the caller holds is shared with the store,
and every read returns freshly decoded objects the caller may mutate freely.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from timecrisis.models import (
    BackoffStrategy,
    FailureKind,
    Job,
    JobLog,
    JobRun,
    JobStatus,
    LogLevel,
    RunStatus,
    ScheduledJob,
    ScheduleType,
    WorkerInfo,
)

_MICROSECOND = timedelta(microseconds=1)


def elapsed_microseconds(start: datetime, end: datetime) -> int:
    """Whole microseconds from `start` to `end`, never negative (a clock set back in a test
    must not produce a negative duration). Integers keep duration sums exact."""
    return max(0, (end - start) // _MICROSECOND)


@dataclass(slots=True)
class JobRow:
    id: str
    seq: int  # the enqueue sequence: FIFO order among equal priorities, and list_jobs order
    type: str
    data_json: str
    priority: int
    max_retries: int
    backoff_strategy: BackoffStrategy
    retry_delay: float
    max_retry_delay: float
    entity_id: str | None
    unique_key: str | None
    scheduled_job_id: str | None
    schedule_fire_at: datetime | None
    run_at: datetime
    expires_at: datetime | None
    created_at: datetime
    status: JobStatus = JobStatus.PENDING
    attempts: int = 0
    progress: float = 0
    fail_reason: str | None = None
    failure_kind: FailureKind | None = None
    result_json: str = "null"
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker: str | None = None
    dead_lettered: bool = False
    # The claim: the fencing token, the run it opened, and until when the claim holds.
    token: str | None = None
    run_id: str | None = None
    lease_expires_at: datetime | None = None
    cancel_requested: bool = False
    cancel_terminate: bool = False  # the cancel request asks to interrupt the handler
    headers: dict[str, str] | None = None  # the store's own copy (see `to_record`)
    concurrency_key: str | None = None  # flow control (docs/flow-control.md)
    queue: str = "default"
    # Bumped on every status change; index entries remember it, so an entry made for an
    # earlier state of the job is recognised as stale and dropped (lazy deletion).
    version: int = 0

    def clear_claim(self) -> None:
        self.token = None
        self.run_id = None
        self.lease_expires_at = None

    def to_record(self) -> Job:
        return Job(
            id=self.id,
            type=self.type,
            data=json.loads(self.data_json),
            status=self.status,
            priority=self.priority,
            max_retries=self.max_retries,
            attempts=self.attempts,
            backoff_strategy=self.backoff_strategy,
            entity_id=self.entity_id,
            scheduled_job_id=self.scheduled_job_id,
            unique_key=self.unique_key,
            run_at=self.run_at,
            expires_at=self.expires_at,
            progress=self.progress,
            fail_reason=self.fail_reason,
            failure_kind=self.failure_kind,
            result=json.loads(self.result_json),
            created_at=self.created_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            worker=self.worker,
            dead_lettered=self.dead_lettered,
            retry_delay=self.retry_delay,
            max_retry_delay=self.max_retry_delay,
            # A fresh dict per read, like the decoded payload: callers may mutate what they get.
            headers=None if self.headers is None else dict(self.headers),
            concurrency_key=self.concurrency_key,
            queue=self.queue,
            cancel_requested=self.cancel_requested and self.status is JobStatus.RUNNING,
        )


@dataclass(slots=True)
class RunRow:
    id: str
    job_id: str
    job_type: str
    attempt: int
    worker: str
    started_at: datetime
    status: RunStatus = RunStatus.RUNNING
    finished_at: datetime | None = None
    duration_us: int | None = None
    progress: float = 0
    error: str | None = None
    traceback: str | None = None
    failure_kind: FailureKind | None = None

    def finish(
        self,
        status: RunStatus,
        now: datetime,
        *,
        error: str | None = None,
        kind: FailureKind | None = None,
        traceback: str | None = None,
    ) -> None:
        self.status = status
        self.finished_at = now
        self.duration_us = elapsed_microseconds(self.started_at, now)
        self.error = error
        self.failure_kind = kind
        self.traceback = traceback

    def to_record(self) -> JobRun:
        return JobRun(
            id=self.id,
            job_id=self.job_id,
            attempt=self.attempt,
            status=self.status,
            worker=self.worker,
            started_at=self.started_at,
            finished_at=self.finished_at,
            duration=None if self.duration_us is None else self.duration_us / 1_000_000,
            progress=self.progress,
            error=self.error,
            traceback=self.traceback,
            failure_kind=self.failure_kind,
        )


@dataclass(frozen=True, slots=True)
class LogRow:
    job_id: str
    run_id: str | None
    timestamp: datetime
    level: LogLevel
    message: str
    metadata_json: str | None

    def to_record(self) -> JobLog:
        return JobLog(
            job_id=self.job_id,
            run_id=self.run_id,
            timestamp=self.timestamp,
            level=self.level,
            message=self.message,
            metadata=None if self.metadata_json is None else json.loads(self.metadata_json),
        )


@dataclass(slots=True)
class ScheduleRow:
    id: str
    name: str
    type: str
    data_json: str
    schedule_type: ScheduleType
    schedule_value: str
    time_zone: str | None
    enabled: bool
    allow_overlap: bool
    next_run_at: datetime | None
    created_at: datetime
    updated_at: datetime
    last_scheduled_at: datetime | None = None
    priority: int = 1
    max_retries: int = 0
    backoff_strategy: BackoffStrategy = "exponential"
    retry_delay: float = 10.0
    max_retry_delay: float = 86400.0
    queue: str = "default"

    def to_record(self) -> ScheduledJob:
        return ScheduledJob(
            id=self.id,
            name=self.name,
            type=self.type,
            data=json.loads(self.data_json),
            schedule_type=self.schedule_type,
            schedule_value=self.schedule_value,
            time_zone=self.time_zone,
            enabled=self.enabled,
            allow_overlap=self.allow_overlap,
            next_run_at=self.next_run_at,
            last_scheduled_at=self.last_scheduled_at,
            created_at=self.created_at,
            updated_at=self.updated_at,
            priority=self.priority,
            max_retries=self.max_retries,
            backoff_strategy=self.backoff_strategy,
            retry_delay=self.retry_delay,
            max_retry_delay=self.max_retry_delay,
            queue=self.queue,
        )


@dataclass(slots=True)
class LockRow:
    owner: str
    token: str
    acquired_at: datetime
    expires_at: datetime


@dataclass(slots=True)
class WorkerRow:
    name: str
    first_seen: datetime
    last_heartbeat: datetime
    is_leader: bool
    running: int
    expires_at: datetime  # the worker's own deadline: last heartbeat + the TTL it sent

    def to_record(self) -> WorkerInfo:
        return WorkerInfo(
            name=self.name,
            first_seen=self.first_seen,
            last_heartbeat=self.last_heartbeat,
            is_leader=self.is_leader,
            running=self.running,
            expires_at=self.expires_at,
        )
