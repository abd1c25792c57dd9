"""Storage-neutral records: what the read API returns and what every storage backend produces.

All datetimes are aware and in UTC. Payloads (`data`), results and log metadata are plain JSON
values; nothing is ever pickled.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

JsonValue: TypeAlias = Any
"""A value that `json.dumps` accepts (dict, list, str, int, float, bool, None)."""

BackoffStrategy: TypeAlias = Literal["exponential", "linear"]
ScheduleType: TypeAlias = Literal["cron", "interval", "exact"]
LogLevel: TypeAlias = Literal["debug", "info", "warn", "error"]

MIN_PRIORITY = -20
MAX_PRIORITY = 20


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


FINISHED_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED}
)


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    RELEASED = "released"  # given back at stop(): the attempt was not charged


class FailureKind(StrEnum):
    """Why a run failed (`JobRun.failure_kind`), or why a job's last failure happened
    (`Job.failure_kind`). Metrics, hooks and the dashboard read this, never the error text."""

    ERROR = "error"  # the handler raised
    TIMEOUT = "timeout"  # the handler overran its definition's `timeout`
    LEASE_EXPIRED = "lease_expired"  # its worker died or lost the store; the reaper took it back
    EXPIRED = "expired"  # the job passed its `expires_at` before an attempt could start
    CRASHED = "crashed"  # a fork-mode child died: a signal, a non-zero exit, no report
    NON_RETRYABLE = "non_retryable"  # NonRetryableError, or a payload that no longer validates
    CANCELED = "canceled"  # the run was ended by `cancel_job`


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Job(_Record):
    id: str
    type: str
    data: JsonValue
    status: JobStatus
    priority: int
    max_retries: int
    attempts: int
    backoff_strategy: BackoffStrategy
    entity_id: str | None = None
    scheduled_job_id: str | None = None
    unique_key: str | None = None
    run_at: datetime
    expires_at: datetime | None = None
    progress: float = 0
    fail_reason: str | None = None
    # The kind of the failure `fail_reason` describes (None when there is none). An expired job
    # never started an attempt, so it has no run: this is where its `expired` is recorded.
    failure_kind: FailureKind | None = None
    result: JsonValue = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Not in the seed's record, but operators need them: who holds the job, and whether it is in
    # the dead-letter queue (failed for good: retries exhausted, non-retryable, or expired).
    worker: str | None = None
    dead_lettered: bool = False
    retry_delay: float = 10.0
    max_retry_delay: float = 86400.0
    # Propagation headers written at enqueue by OpenTelemetry's propagators (W3C `traceparent`,
    # `tracestate`, `baggage`), for the worker's attempt spans (docs/otel.md). None when the
    # enqueuing process did not trace, and for jobs fired by a schedule.
    headers: dict[str, str] | None = None
    # Flow control: the enqueue's `concurrency_key`; at most the type's `key_concurrency` jobs
    # with the same key run at once, cluster-wide (docs/flow-control.md).
    concurrency_key: str | None = None
    # Flow control (docs/flow-control.md): the queue the job waits in; only workers that serve
    # it claim it. Every job written before queues existed is in "default".
    queue: str = "default"
    # `cancel_job` asked this running job to stop and its handler has not ended yet (it ends
    # `canceled`): what the dashboard shows as "cancel requested". False once the job is not
    # running, whatever the store keeps.
    cancel_requested: bool = False


class JobRun(_Record):
    id: str
    job_id: str
    attempt: int
    status: RunStatus
    worker: str
    started_at: datetime
    finished_at: datetime | None = None
    duration: float | None = None  # seconds
    progress: float = 0
    error: str | None = None
    # The formatted traceback of the handler's exception (fork mode included); None when the
    # run did not end on an exception it raised (a timeout, a crash, a lost lease, a success).
    traceback: str | None = None
    failure_kind: FailureKind | None = None


class JobLog(_Record):
    job_id: str
    run_id: str | None
    timestamp: datetime
    level: LogLevel
    message: str
    metadata: dict[str, JsonValue] | None = None


class ScheduledJob(_Record):
    id: str
    name: str
    type: str
    data: JsonValue
    schedule_type: ScheduleType
    schedule_value: str
    time_zone: str | None = None
    enabled: bool
    allow_overlap: bool = True
    next_run_at: datetime | None
    last_scheduled_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # The options of the jobs it fires, resolved from the `JobDefinition` by the node that
    # called `schedule()` (DESIGN §4): the leader that fires a tick may not know the type. A
    # schedule stored before they existed has the store defaults until it is registered again.
    priority: int = 1
    max_retries: int = 0
    backoff_strategy: BackoffStrategy = "exponential"
    retry_delay: float = 10.0  # seconds: the backoff base
    max_retry_delay: float = 86400.0  # seconds: the backoff cap
    queue: str = "default"  # the queue of the jobs it fires (docs/flow-control.md)


class WorkerInfo(_Record):
    name: str
    first_seen: datetime
    last_heartbeat: datetime
    is_leader: bool = False
    running: int = 0
    # The worker's own deadline: written with each heartbeat as now + the TTL the worker chose
    # (3 x its heartbeat interval); past it, the leader removes the worker. None for a row
    # written before it existed (then last_heartbeat + 45 s applies).
    expires_at: datetime | None = None


class TypeMetrics(_Record):
    running: int = 0
    pending: int = 0
    completed: int = 0
    failed: int = 0
    canceled: int = 0
    dead_letter: int = 0
    average_duration: float | None = None  # seconds, over completed runs


class QueueMetrics(_Record):
    """Live counts of one queue (docs/flow-control.md): jobs waiting in it and running from it.
    A queue no worker serves shows its pending count growing while nothing runs."""

    running: int = 0
    pending: int = 0


class Metrics(TypeMetrics):
    types: dict[str, TypeMetrics] = Field(default_factory=dict)
    # Every queue that has a pending or running job, by name.
    queues: dict[str, QueueMetrics] = Field(default_factory=dict)
