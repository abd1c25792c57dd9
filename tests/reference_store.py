"""`ReferenceJobStorage`: the `JobStorage` protocol written for obviousness, not speed.

The oracle of the model-based test (`tests/storage/test_model.py`): every real store, the fast
in-memory one included, must produce exactly the records this one produces. So it keeps no
index and no running total: plain lists of rows, a linear scan for every question, one
`asyncio.Lock` around every call (no call awaits inside it, so each is atomic on its loop).

Each rule is written out here from the docstrings of `storage/base.py`. The shared pure
decisions of `storage/_common.py` are reused where the real stores use them too, because
they ARE the rule, not an implementation of it: `decide_failure` (retry, dead-letter, cancel
is final), `schedule_definition_changed` (what an upsert keeps), `resolve_run_at`/
`resolve_expires_at`, the error texts, `RunStatsBuilder` (histogram folding) and the wake-up
hub (it is what makes a listener run on its own loop). Where the contract is silent this
store makes the choices `storage/memory.py` documents (tick duplicates refused like unique
keys, a duplicate id fails the batch, `retry_job` refuses a key another live job holds, logs
of a missing job dropped).

A row mirrors its public record field by field (`_record` copies every field the record
declares), so a field added to `Job`, `JobRun`, `ScheduledJob` or `WorkerInfo` is one line in
the row here plus wherever a rule sets it.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel

from timecrisis._bounds import check_flow_name
from timecrisis.clock import Clock
from timecrisis.errors import StorageError
from timecrisis.models import (
    FINISHED_STATUSES,
    BackoffStrategy,
    FailureKind,
    Job,
    JobLog,
    JobRun,
    JobStatus,
    JsonValue,
    Metrics,
    QueueMetrics,
    RunStatus,
    ScheduledJob,
    ScheduleType,
    TypeMetrics,
    WorkerInfo,
)
from timecrisis.rate_limits import RateLimit
from timecrisis.storage import _common as common
from timecrisis.storage._run_stats import (
    RunStatsBuilder,
    bucket_microseconds,
    duration_bucket,
    require_aware,
)
from timecrisis.storage._wakeups import WakeupHub
from timecrisis.storage.base import (
    DEFAULT_WORKER_TTL,
    AdvanceResult,
    CancelOutcome,
    ClaimedJob,
    ClaimParams,
    ClaimRef,
    Completion,
    DueSchedules,
    FailOutcome,
    Failure,
    FinishedCount,
    InsertResult,
    JobQuery,
    LockInfo,
    NewJob,
    NewLogEntry,
    PurgeParams,
    RenewResult,
    RunStats,
    ScheduleAdvance,
    ScheduleSpec,
    WakeupCallback,
)

R = TypeVar("R", bound=BaseModel)
ACTIVE = (JobStatus.PENDING, JobStatus.RUNNING)


def _json(value: JsonValue) -> JsonValue:
    """A value as a store gives it back: through JSON text (tuples become lists...)."""
    return json.loads(common.dump_json(value))


def _record(model: type[R], row: object) -> R:
    """The public record of a row: every field the model declares, deep-copied."""
    return model(**{name: copy.deepcopy(getattr(row, name)) for name in model.model_fields})


def _job_record(job: _Job) -> Job:
    """A job's public record: a cancel request shows only while the job still runs."""
    record = _record(Job, job)
    if record.cancel_requested and record.status is not JobStatus.RUNNING:
        return record.model_copy(update={"cancel_requested": False})
    return record


def _micros(start: datetime, end: datetime) -> int:
    return max(0, (end - start) // timedelta(microseconds=1))  # a clock set back: 0, not < 0


@dataclass
class _Run:
    id: str
    job_id: str
    attempt: int
    worker: str
    started_at: datetime
    status: RunStatus = RunStatus.RUNNING
    finished_at: datetime | None = None
    duration_us: int | None = None  # whole microseconds, so sums stay exact
    progress: float = 0
    error: str | None = None
    traceback: str | None = None
    failure_kind: FailureKind | None = None

    @property
    def duration(self) -> float | None:
        return None if self.duration_us is None else self.duration_us / 1_000_000


@dataclass
class _Job:
    # The fields of `Job`:
    id: str
    type: str
    data: JsonValue
    priority: int
    max_retries: int
    backoff_strategy: BackoffStrategy
    retry_delay: float
    max_retry_delay: float
    entity_id: str | None
    unique_key: str | None
    scheduled_job_id: str | None
    run_at: datetime
    expires_at: datetime | None
    created_at: datetime
    status: JobStatus = JobStatus.PENDING
    attempts: int = 0
    progress: float = 0
    fail_reason: str | None = None
    failure_kind: FailureKind | None = None
    result: JsonValue = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker: str | None = None
    dead_lettered: bool = False
    headers: dict[str, str] | None = None
    concurrency_key: str | None = None
    queue: str = "default"
    # Only the store sees these:
    seq: int = 0  # enqueue order
    schedule_fire_at: datetime | None = None
    token: str | None = None
    lease_expires_at: datetime | None = None
    cancel_requested: bool = False
    cancel_terminate: bool = False
    runs: list[_Run] = field(default_factory=list)
    logs: list[JobLog] = field(default_factory=list)

    def finish(self, status: JobStatus, now: datetime, *, dead_lettered: bool = False) -> None:
        self.status, self.finished_at, self.dead_lettered = status, now, dead_lettered
        self.token = self.lease_expires_at = None

    def back_to_pending(self) -> None:
        self.status, self.finished_at, self.dead_lettered, self.worker = (
            JobStatus.PENDING, None, False, None
        )  # fmt: skip
        self.token = self.lease_expires_at = None


@dataclass
class _Schedule:
    id: str
    name: str
    type: str
    data: JsonValue
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


# The job options a schedule stores and an upsert always rewrites.
SCHEDULE_OPTIONS = (
    "priority", "max_retries", "backoff_strategy", "retry_delay", "max_retry_delay", "queue"
)  # fmt: skip


_LIVE = (JobStatus.PENDING, JobStatus.RUNNING)


@dataclass
class _Worker:
    name: str
    first_seen: datetime
    last_heartbeat: datetime
    is_leader: bool
    running: int
    expires_at: datetime


@dataclass
class _Lock:
    name: str
    owner: str
    token: str
    acquired_at: datetime
    expires_at: datetime


class ReferenceJobStorage:
    def __init__(self, *, clock: Clock) -> None:
        self._clock = clock
        self._mutex = asyncio.Lock()
        self.jobs: list[_Job] = []  # in enqueue order
        self.starts: dict[str, list[datetime]] = {}  # rate-limited types: every claim time
        self.schedules: list[_Schedule] = []
        self.workers: list[_Worker] = []
        self.locks: list[_Lock] = []
        self.paused: set[str] = set()  # paused job types and queues
        self._wakeups = WakeupHub()
        self._last_seq = 0

    def _now(self) -> datetime:
        return common.to_utc(self._clock.now())

    def _job(self, job_id: str) -> _Job | None:
        return next((job for job in self.jobs if job.id == job_id), None)

    def _claimed(self, ref: ClaimRef) -> _Job | None:
        """The job if `ref` still holds it (fencing), else None."""
        job = self._job(ref.job_id)
        if job is None or job.status is not JobStatus.RUNNING or job.token != ref.token:
            return None
        return job

    # ---- lifecycle ---------------------------------------------------------------------------

    async def init(self) -> None:
        """Nothing to create."""

    async def close(self) -> None:
        self._wakeups.clear()  # the data stays, as in the in-memory store

    async def now(self) -> datetime:
        return self._now()

    # ---- jobs: write -------------------------------------------------------------------------

    async def insert_jobs(
        self, jobs: Sequence[NewJob], *, connection: Any = None
    ) -> list[InsertResult]:
        if connection is not None:
            raise TypeError("the reference store has no transactions to join")
        async with self._mutex:
            results = self._insert(jobs, self._now())
        if any(result.created for result in results):
            self._wakeups.notify()
        return results

    def _insert(self, jobs: Sequence[NewJob], now: datetime) -> list[InsertResult]:
        rows = [self._new_row(job, now) for job in jobs]  # everything that can raise first
        ids = [job.id for job in jobs]
        if len(set(ids)) < len(ids) or any(self._job(job_id) for job_id in ids):
            raise StorageError("a job id already exists; nothing inserted")
        return [self._insert_row(row) for row in rows]

    def _new_row(self, job: NewJob, now: datetime) -> _Job:
        fire_at = None if job.schedule_fire_at is None else common.to_utc(job.schedule_fire_at)
        return _Job(
            id=job.id, type=job.type, data=_json(job.data), priority=job.priority,
            max_retries=job.max_retries, backoff_strategy=job.backoff_strategy,
            retry_delay=job.retry_delay, max_retry_delay=job.max_retry_delay,
            entity_id=job.entity_id, unique_key=job.unique_key,
            scheduled_job_id=job.scheduled_job_id, schedule_fire_at=fire_at,
            run_at=common.resolve_run_at(job, now),
            expires_at=common.resolve_expires_at(job, now), created_at=now,
            headers=None if job.headers is None else dict(job.headers),
            concurrency_key=job.concurrency_key,
            queue=job.queue,
        )  # fmt: skip

    def _insert_row(self, row: _Job) -> InsertResult:
        holder = self._duplicate_of(row)
        if holder is not None:
            return InsertResult(holder.id, created=False)
        self._last_seq += 1
        row.seq = self._last_seq
        self.jobs.append(row)
        return InsertResult(row.id, created=True)

    def _duplicate_of(self, row: _Job) -> _Job | None:
        """The job of the same schedule tick (while it exists), else the pending or running
        job of the same type holding the same unique key."""
        tick = (row.scheduled_job_id, row.schedule_fire_at)
        if None not in tick:
            for other in self.jobs:
                if (other.scheduled_job_id, other.schedule_fire_at) == tick:
                    return other
        return self._key_holder(row)

    def _key_holder(self, row: _Job) -> _Job | None:
        if row.unique_key is None:
            return None
        return next(
            (
                other
                for other in self.jobs
                if other is not row
                and other.status in ACTIVE
                and (other.type, other.unique_key) == (row.type, row.unique_key)
            ),
            None,
        )

    async def cancel_job(self, job_id: str, *, terminate: bool = False) -> CancelOutcome:
        async with self._mutex:
            job = self._job(job_id)
            if job is None:
                return "not_found"
            if job.status is JobStatus.PENDING:
                job.finish(JobStatus.CANCELED, self._now())
                return "canceled"
            if job.status is JobStatus.RUNNING:
                job.cancel_requested = True
                job.cancel_terminate = job.cancel_terminate or terminate  # never withdrawn
                return "cancel_requested"
            return "not_cancellable"

    async def retry_job(self, job_id: str) -> bool:
        async with self._mutex:
            job = self._job(job_id)
            if job is None or job.status not in (JobStatus.FAILED, JobStatus.CANCELED):
                return False
            if self._key_holder(job) is not None:
                return False
            job.back_to_pending()
            job.attempts, job.fail_reason, job.failure_kind = 0, None, None
            job.run_at = self._now()
        self._wakeups.notify()
        return True

    async def purge_jobs(self, params: PurgeParams) -> int:
        if params.statuses - FINISHED_STATUSES:
            raise ValueError(f"purge deletes finished jobs only, not {sorted(params.statuses)}")
        async with self._mutex:
            cutoff = self._now() - params.older_than
            doomed = sorted(
                (
                    job
                    for job in self.jobs
                    if job.status in params.statuses
                    and job.finished_at is not None
                    and job.finished_at <= cutoff
                ),
                key=lambda job: (job.finished_at, job.seq),
            )[: params.limit]
            self.jobs = [job for job in self.jobs if job not in doomed]
            return len(doomed)

    # ---- jobs: read --------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job | None:
        async with self._mutex:
            job = self._job(job_id)
            return None if job is None else _job_record(job)

    async def list_jobs(self, query: JobQuery) -> list[Job]:
        async with self._mutex:
            newest_first = self.jobs[::-1]
            if query.cursor is not None:
                cursor = self._job(query.cursor)
                if cursor is None:
                    return []
                newest_first = newest_first[newest_first.index(cursor) + 1 :]
            matching = [
                job
                for job in newest_first
                if query.status in (None, job.status)
                and query.type in (None, job.type)
                and query.entity_id in (None, job.entity_id)
                and query.dead_lettered in (None, job.dead_lettered)
            ]
            return [_job_record(job) for job in matching[: max(query.limit, 0)]]

    async def get_job_runs(self, job_id: str) -> list[JobRun]:
        async with self._mutex:
            job = self._job(job_id)
            return [] if job is None else [_record(JobRun, run) for run in job.runs]

    async def get_job_logs(self, job_id: str) -> list[JobLog]:
        async with self._mutex:
            job = self._job(job_id)
            logs = [] if job is None else sorted(job.logs, key=lambda log: log.timestamp)
            return [log.model_copy(deep=True) for log in logs]

    async def get_metrics(self) -> Metrics:
        async with self._mutex:
            types = {
                job_type: self._type_metrics(job_type)
                for job_type in sorted({job.type for job in self.jobs})
            }
            counts = {
                name: sum(getattr(metrics, name) for metrics in types.values())
                for name in ("running", "pending", "completed", "failed", "canceled")
            }
            return Metrics(
                **counts,
                dead_letter=sum(metrics.dead_letter for metrics in types.values()),
                average_duration=self._average_duration(None),
                types=types,
                queues={
                    queue: QueueMetrics(
                        running=self._count(queue, JobStatus.RUNNING),
                        pending=self._count(queue, JobStatus.PENDING),
                    )
                    for queue in sorted({j.queue for j in self.jobs if j.status in _LIVE})
                },
            )

    def _count(self, queue: str, status: JobStatus) -> int:
        return sum(job.queue == queue and job.status is status for job in self.jobs)

    def _type_metrics(self, job_type: str) -> TypeMetrics:
        jobs = [job for job in self.jobs if job.type == job_type]
        return TypeMetrics(
            **{status.value: sum(job.status is status for job in jobs) for status in JobStatus},
            dead_letter=sum(job.status is JobStatus.FAILED and job.dead_lettered for job in jobs),
            average_duration=self._average_duration(job_type),
        )

    def _average_duration(self, job_type: str | None) -> float | None:
        durations = [
            run.duration_us
            for job in self.jobs
            if job_type in (None, job.type)
            for run in job.runs
            if run.status is RunStatus.COMPLETED and run.duration_us is not None
        ]
        return sum(durations) / len(durations) / 1_000_000 if durations else None

    async def get_run_stats(self) -> list[RunStats]:
        async with self._mutex:
            builder = RunStatsBuilder()
            for job in self.jobs:
                for run in job.runs:
                    builder.add(
                        job.type, run.status, runs=1, retries=int(run.attempt > 1),
                        bucket=None if run.duration is None else duration_bucket(run.duration),
                        duration_sum_us=run.duration_us or 0, failure_kind=run.failure_kind,
                    )  # fmt: skip
            return builder.build()

    async def count_finished_jobs(self, since: datetime, bucket: timedelta) -> list[FinishedCount]:
        require_aware(since)
        width = bucket_microseconds(bucket)
        since = common.to_utc(since)
        async with self._mutex:
            keys = [
                (_micros(since, job.finished_at) // width, job.status)
                for job in self.jobs
                if job.finished_at is not None and job.finished_at >= since
            ]
        return [
            FinishedCount(since + timedelta(microseconds=index * width), status, keys.count(key))
            for key in sorted(set(keys))
            for index, status in [key]
        ]

    # ---- claims ------------------------------------------------------------------------------

    async def claim_jobs(self, params: ClaimParams) -> list[ClaimedJob]:
        async with self._mutex:
            now = self._now()
            candidates = sorted(
                (
                    job
                    for job in self.jobs
                    if job.status is JobStatus.PENDING
                    and job.run_at <= now
                    and (job.expires_at is None or job.expires_at > now)
                    and job.type in params.type_limits
                    and (params.queues is None or job.queue in params.queues)
                    and job.type not in self.paused
                    and job.queue not in self.paused
                ),
                key=lambda job: (-job.priority, job.seq),
            )
            claimed: list[ClaimedJob] = []
            for job in candidates:
                if len(claimed) >= max(params.limit, 0):
                    break
                limit = params.type_limits[job.type]
                running = sum(
                    o.status is JobStatus.RUNNING and o.type == job.type for o in self.jobs
                )
                if (
                    (limit is None or running < limit)
                    and self._rate_allows(job.type, params, now)
                    and self._key_allows(job, params)
                ):
                    claimed.append(self._claim(job, params, now))
                    if job.type in params.rate_limits:
                        self.starts.setdefault(job.type, []).append(now)
            return claimed

    # Flow control, naively: every start time of a rate-limited type is kept and counted, and
    # running jobs of a key are counted by a scan (the real stores must not do either).
    def _rate_allows(self, job_type: str, params: ClaimParams, now: datetime) -> bool:
        rate = params.rate_limits.get(job_type)
        if rate is None:
            return True
        inside = [at for at in self.starts.get(job_type, []) if at > now - rate.window]
        return len(inside) < rate.limit

    def _key_allows(self, job: _Job, params: ClaimParams) -> bool:
        cap = params.key_limits.get(job.type)
        if cap is None or job.concurrency_key is None:
            return True
        running = sum(
            o.status is JobStatus.RUNNING
            and o.type == job.type
            and o.concurrency_key == job.concurrency_key
            for o in self.jobs
        )
        return running < cap

    async def rate_limit_free_at(self, rate_limits: Mapping[str, RateLimit]) -> datetime | None:
        async with self._mutex:
            now = self._now()
            frees: list[datetime] = []
            for job_type, rate in rate_limits.items():
                inside = sorted(a for a in self.starts.get(job_type, []) if a > now - rate.window)
                if len(inside) >= rate.limit:  # full: free when the limit-th newest leaves
                    frees.append(inside[-rate.limit] + rate.window)
            return min(frees, default=None)

    def _claim(self, job: _Job, params: ClaimParams, now: datetime) -> ClaimedJob:
        job.attempts += 1
        run = _Run(common.new_id(), job.id, job.attempts, params.worker, started_at=now)
        job.runs.append(run)
        job.status, job.started_at, job.worker = JobStatus.RUNNING, now, params.worker
        job.token, job.lease_expires_at = common.new_id(), now + params.lease_ttl
        job.cancel_requested = job.cancel_terminate = False
        return ClaimedJob(_job_record(job), job.token, run.id, job.lease_expires_at)

    async def renew_claims(self, refs: Sequence[ClaimRef], lease_ttl: timedelta) -> RenewResult:
        async with self._mutex:
            jobs = [job for job in map(self._claimed, refs) if job is not None]
            for job in jobs:
                job.lease_expires_at = self._now() + lease_ttl
            return RenewResult(
                frozenset(job.id for job in jobs),
                frozenset(job.id for job in jobs if job.cancel_requested),
                frozenset(job.id for job in jobs if job.cancel_requested and job.cancel_terminate),
            )

    async def complete_jobs(self, completions: Sequence[Completion]) -> list[datetime | None]:
        results = [_json(completion.result) for completion in completions]  # may raise: first
        async with self._mutex:
            now = self._now()
            finished: list[datetime | None] = []
            for completion, result in zip(completions, results, strict=True):
                job = self._claimed(completion.ref)
                if job is None:
                    finished.append(None)
                    continue
                run = job.runs[-1]
                self._end_run(run, RunStatus.COMPLETED, now)
                run.progress = 100
                job.result = result
                if not completion.canceled:
                    job.progress = 100
                job.finish(JobStatus.CANCELED if completion.canceled else JobStatus.COMPLETED, now)
                finished.append(now)
            return finished

    def _end_run(self, run: _Run, status: RunStatus, now: datetime, **failure: Any) -> None:
        run.status, run.finished_at = status, now
        run.duration_us = _micros(run.started_at, now)
        run.error = failure.get("error")
        run.failure_kind = failure.get("kind")
        run.traceback = failure.get("traceback")

    async def fail_job(self, failure: Failure) -> FailOutcome | None:
        async with self._mutex:
            job = self._claimed(failure.ref)
            if job is None:
                return None
            outcome = self._fail(
                job, failure.error, failure.retryable, failure.kind, failure.traceback,
                retry_in=failure.retry_in,
            )  # fmt: skip
        if outcome.will_retry:
            self._wakeups.notify()
        return outcome

    def _fail(
        self,
        job: _Job,
        error: str,
        retryable: bool,
        kind: FailureKind,
        traceback: str | None,
        *,
        retry_in: timedelta | None = None,
    ) -> FailOutcome:
        now = self._now()
        decision = common.decide_failure(
            now=now, error=error, retryable=retryable, attempts=job.attempts,
            max_retries=job.max_retries, backoff_strategy=job.backoff_strategy,
            retry_delay=job.retry_delay, max_retry_delay=job.max_retry_delay,
            expires_at=job.expires_at, cancel_requested=job.cancel_requested, retry_in=retry_in,
        )  # fmt: skip
        self._end_run(
            job.runs[-1], RunStatus.FAILED, now, error=error, kind=kind, traceback=traceback
        )
        job.fail_reason, job.failure_kind = decision.fail_reason, kind
        if decision.canceled:
            job.finish(JobStatus.CANCELED, now)
        elif decision.will_retry:
            assert decision.run_at is not None
            job.back_to_pending()
            job.run_at = decision.run_at
        else:
            job.finish(JobStatus.FAILED, now, dead_lettered=decision.dead_lettered)
        return FailOutcome(_job_record(job), decision.will_retry, error, kind)

    async def release_jobs(self, refs: Sequence[ClaimRef]) -> list[bool]:
        async with self._mutex:
            released: list[bool] = []
            for ref in refs:
                job = self._claimed(ref)
                released.append(job is not None)
                if job is None:
                    continue
                self._end_run(job.runs[-1], RunStatus.RELEASED, self._now())
                if job.cancel_requested:  # cancel is final: it ran, and it ends here
                    job.finish(JobStatus.CANCELED, self._now())
                else:
                    job.back_to_pending()
                    job.attempts -= 1  # a graceful stop does not charge the attempt
        if any(released):
            self._wakeups.notify()
        return released

    async def snooze_job(self, ref: ClaimRef, delay: timedelta) -> Job | None:
        async with self._mutex:
            job = self._claimed(ref)
            if job is None:
                return None
            now = self._now()
            self._end_run(job.runs[-1], RunStatus.RELEASED, now)
            if job.cancel_requested:  # cancel is final, as for a release
                job.finish(JobStatus.CANCELED, now)
            else:
                job.back_to_pending()
                job.attempts -= 1  # a snooze does not charge the attempt
                job.run_at = now + delay
            snoozed = _job_record(job)
        if snoozed.status is JobStatus.PENDING and delay <= timedelta(0):
            self._wakeups.notify()
        return snoozed

    async def update_progress(self, ref: ClaimRef, percent: float) -> bool:
        async with self._mutex:
            job = self._claimed(ref)
            if job is None:
                return False
            job.progress = job.runs[-1].progress = percent
            return True

    async def append_logs(self, entries: Sequence[NewLogEntry]) -> None:
        async with self._mutex:
            now = self._now()
            logs = [
                JobLog(
                    job_id=entry.job_id,
                    run_id=entry.run_id,
                    timestamp=now,
                    level=entry.level,
                    message=entry.message,
                    metadata=None if entry.metadata is None else _json(entry.metadata),
                )
                for entry in entries  # all encoded first: a bad one stores none
            ]
            for log in logs:
                job = self._job(log.job_id)
                if job is not None:
                    job.logs.append(log)

    # ---- maintenance -------------------------------------------------------------------------

    async def recover_expired_leases(self, limit: int = 100) -> list[FailOutcome]:
        async with self._mutex:
            now = self._now()
            lost = sorted(
                (
                    job
                    for job in self.jobs
                    if job.status is JobStatus.RUNNING
                    and job.lease_expires_at is not None
                    and job.lease_expires_at <= now
                ),
                key=lambda job: (job.lease_expires_at, job.seq),
            )[: max(limit, 0)]
            outcomes = [
                self._fail(
                    job,
                    common.lease_expired_error(job.worker, job.lease_expires_at),
                    True,
                    FailureKind.LEASE_EXPIRED,
                    None,
                )
                for job in lost
            ]
        if any(outcome.will_retry for outcome in outcomes):
            self._wakeups.notify()
        return outcomes

    async def expire_jobs(self, limit: int = 100) -> list[Job]:
        async with self._mutex:
            now = self._now()
            expired = sorted(
                (
                    job
                    for job in self.jobs
                    if job.status is JobStatus.PENDING
                    and job.expires_at is not None
                    and job.expires_at <= now
                ),
                key=lambda job: (job.expires_at, job.seq),
            )[: max(limit, 0)]
            for job in expired:
                assert job.expires_at is not None
                job.fail_reason = common.expired_reason(job.expires_at)
                job.failure_kind = FailureKind.EXPIRED
                job.finish(JobStatus.FAILED, now, dead_lettered=True)
            return [_job_record(job) for job in expired]

    # ---- locks -------------------------------------------------------------------------------

    def _live_lock(self, name: str) -> _Lock | None:
        """The lock `name` if someone holds it now (a lock is expired at `expires_at`)."""
        now = self._now()
        return next((lk for lk in self.locks if lk.name == name and lk.expires_at > now), None)

    async def acquire_lock(self, name: str, owner: str, ttl: timedelta) -> str | None:
        async with self._mutex:
            if self._live_lock(name) is not None:
                return None  # not re-entrant: held by `owner` itself is held
            now = self._now()
            self.locks = [lk for lk in self.locks if lk.name != name]
            self.locks.append(_Lock(name, owner, common.new_id(), now, now + ttl))
            return self.locks[-1].token

    async def renew_lock(self, name: str, token: str, ttl: timedelta) -> bool:
        async with self._mutex:
            lock = self._live_lock(name)
            if lock is None or lock.token != token:
                return False
            lock.expires_at = self._now() + ttl
            return True

    async def release_lock(self, name: str, token: str) -> bool:
        async with self._mutex:
            kept = [lk for lk in self.locks if (lk.name, lk.token) != (name, token)]
            released, self.locks = len(kept) < len(self.locks), kept
            return released

    async def get_lock(self, name: str) -> LockInfo | None:
        async with self._mutex:
            lock = self._live_lock(name)
            return (
                None
                if lock is None
                else LockInfo(name, lock.owner, lock.expires_at, lock.acquired_at)
            )

    # ---- workers -----------------------------------------------------------------------------

    async def heartbeat_worker(
        self, name: str, *, running: int, is_leader: bool, ttl: timedelta = DEFAULT_WORKER_TTL
    ) -> None:
        async with self._mutex:
            now = self._now()
            worker = next((w for w in self.workers if w.name == name), None)
            if worker is None:
                self.workers.append(_Worker(name, now, now, is_leader, running, now + ttl))
            else:
                worker.last_heartbeat, worker.is_leader = now, is_leader
                worker.running, worker.expires_at = running, now + ttl

    async def remove_worker(self, name: str) -> None:
        async with self._mutex:
            self.workers = [w for w in self.workers if w.name != name]

    async def list_workers(self) -> list[WorkerInfo]:
        async with self._mutex:
            return [
                _record(WorkerInfo, worker).model_copy(
                    update={"running": self._running_of(worker.name)}
                )
                for worker in sorted(self.workers, key=lambda w: w.name)
            ]

    def _running_of(self, worker: str) -> int:
        return sum(job.status is JobStatus.RUNNING and job.worker == worker for job in self.jobs)

    async def prune_workers(self) -> list[str]:
        async with self._mutex:
            now = self._now()
            dead = sorted(w.name for w in self.workers if w.expires_at < now)
            self.workers = [w for w in self.workers if w.name not in dead]
            for job in self.jobs:
                ended = job.lease_expires_at is not None and job.lease_expires_at <= now
                if job.status is JobStatus.RUNNING and job.worker in dead and not ended:
                    job.lease_expires_at = now  # recoverable at once; an earlier expiry stays
            return dead

    # ---- flow control ------------------------------------------------------------------------

    async def pause(self, name: str) -> bool:
        check_flow_name(name)
        async with self._mutex:
            newly = name not in self.paused
            self.paused.add(name)
            return newly

    async def resume(self, name: str) -> bool:
        check_flow_name(name)
        async with self._mutex:
            was = name in self.paused
            self.paused.discard(name)
        if was:
            self._wakeups.notify()
        return was

    async def list_paused(self) -> list[str]:
        async with self._mutex:
            return sorted(self.paused)

    # ---- schedules ---------------------------------------------------------------------------

    def _schedule(self, name: str) -> _Schedule | None:
        return next((s for s in self.schedules if s.name == name), None)

    async def upsert_schedule(self, spec: ScheduleSpec) -> ScheduledJob:
        async with self._mutex:
            now = self._now()
            next_run_at = None if spec.next_run_at is None else common.to_utc(spec.next_run_at)
            row = self._schedule(spec.name)
            if row is None:
                row = _Schedule(
                    id=spec.id or common.new_id(), name=spec.name, type=spec.type,
                    data=_json(spec.data), schedule_type=spec.schedule_type,
                    schedule_value=spec.schedule_value, time_zone=spec.time_zone,
                    enabled=True if spec.enabled is None else spec.enabled,
                    allow_overlap=spec.allow_overlap, next_run_at=next_run_at,
                    created_at=now, updated_at=now,
                )  # fmt: skip
                self.schedules.append(row)
            elif common.schedule_definition_changed(
                row.type, row.schedule_type, row.schedule_value, row.time_zone,
                common.dump_json(row.data), spec,
            ):  # fmt: skip
                row.type, row.data, row.schedule_type = (
                    spec.type,
                    _json(spec.data),
                    spec.schedule_type,
                )
                row.time_zone, row.next_run_at = spec.time_zone, next_run_at
            # else unchanged: its next tick and last_scheduled_at stay (DESIGN §1)
            if spec.enabled is not None:
                row.enabled = spec.enabled
            row.schedule_value, row.allow_overlap, row.updated_at = (
                spec.schedule_value, spec.allow_overlap, now
            )  # fmt: skip
            for option in SCHEDULE_OPTIONS:  # always updated: they never move a tick
                setattr(row, option, getattr(spec, option))
            return _record(ScheduledJob, row)

    async def get_schedule(self, name: str) -> ScheduledJob | None:
        async with self._mutex:
            row = self._schedule(name)
            return None if row is None else _record(ScheduledJob, row)

    async def list_schedules(self) -> list[ScheduledJob]:
        async with self._mutex:
            return [_record(ScheduledJob, s) for s in sorted(self.schedules, key=lambda s: s.name)]

    async def set_schedule_enabled(self, name: str, enabled: bool) -> bool:
        async with self._mutex:
            row = self._schedule(name)
            if row is None:
                return False
            row.enabled, row.updated_at = enabled, self._now()
            return True

    async def delete_schedule(self, name: str) -> bool:
        async with self._mutex:
            row = self._schedule(name)
            if row is not None:
                self.schedules.remove(row)
            return row is not None

    async def get_due_schedules(self, limit: int = 100) -> DueSchedules:
        async with self._mutex:
            now = self._now()
            timed = [(s.next_run_at, s) for s in self.schedules if s.enabled and s.next_run_at]
            due = sorted(((at, s.name), s) for at, s in timed if at <= now)
            later = [at for at, _ in timed if at > now]
            return DueSchedules(
                now,
                [_record(ScheduledJob, s) for _, s in due[: max(limit, 0)]],
                min(later, default=None),
            )

    async def advance_schedule(self, advance: ScheduleAdvance) -> AdvanceResult:
        async with self._mutex:
            result = self._advance(advance)
        if result.job_id is not None:
            self._wakeups.notify()
        return result

    def _advance(self, advance: ScheduleAdvance) -> AdvanceResult:
        row = next((s for s in self.schedules if s.id == advance.schedule_id), None)
        if row is None or row.next_run_at != common.to_utc(advance.expected_next_run_at):
            return AdvanceResult(advanced=False)  # compare and set lost
        job_id: str | None = None
        skipped = False
        if advance.job is not None:
            active = any(j.scheduled_job_id == row.id and j.status in ACTIVE for j in self.jobs)
            if not advance.allow_overlap and active:
                skipped = True
            else:
                new = dataclasses.replace(
                    advance.job,
                    scheduled_job_id=advance.job.scheduled_job_id or row.id,
                    schedule_fire_at=advance.job.schedule_fire_at or advance.expected_next_run_at,
                )
                [inserted] = self._insert([new], self._now())
                if inserted.created:  # else this tick already has its job
                    job_id = inserted.id
                    assert new.schedule_fire_at is not None
                    row.last_scheduled_at = common.to_utc(new.schedule_fire_at)
        row.next_run_at = (
            None if advance.next_run_at is None else common.to_utc(advance.next_run_at)
        )
        if advance.disable:
            row.enabled = False
        row.updated_at = self._now()
        return AdvanceResult(advanced=True, job_id=job_id, skipped_overlap=skipped)

    # ---- wake-ups ----------------------------------------------------------------------------

    def add_wakeup_listener(self, callback: WakeupCallback) -> Callable[[], None]:
        return self._wakeups.subscribe(callback)
