"""`InMemoryJobStorage`: the reference implementation of the `JobStorage` contract.

It is what the conformance suite measures the other backends against, and the store users put
under their own tests. Nothing survives the process.

Atomicity: every method does all its work synchronously while holding one `threading.Lock`,
never awaiting in between. On one event loop that alone makes each call atomic; the lock makes
it hold too when several loops in several threads share one store (several schedulers in one
test process). The lock is never held across an `await`, so it cannot deadlock a loop.

Indexes keep the hot paths off a scan of every job (see `_memory/`): pending jobs sit in
per-type heaps in claim order, running counts are kept per type, unique keys and schedule
ticks in maps, finished jobs in heaps by finish time, and metrics in running totals.

Every record returned is a fresh, frozen pydantic model whose JSON values were decoded from
the stored JSON text, so no caller ever holds a reference into the store's state.

Choices where the contract is silent (the conformance suite pins them for every backend):
- a job for a schedule tick that already has a job is refused like a held unique key:
  `created=False` with the existing job's id (`advance_schedule` then reports no `job_id`);
- a job id that already exists makes the whole batch fail with `StorageError`;
- `retry_job` refuses (False) to revive a job whose unique key another live job now holds;
- log lines for a job that no longer exists are dropped;
- `close()` only drops the wake-up listeners: the data stays usable.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from timecrisis.clock import Clock, SystemClock
from timecrisis.models import Job, JobLog, JobRun, JobStatus, Metrics, ScheduledJob, WorkerInfo
from timecrisis.storage._common import dump_json, to_utc
from timecrisis.storage._memory.claims import Claims
from timecrisis.storage._memory.coordination import LockTable, WorkerTable
from timecrisis.storage._memory.jobs import JobTable
from timecrisis.storage._memory.schedules import ScheduleTable
from timecrisis.storage._memory.stats import finished_counts, run_stats
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

__all__ = ["InMemoryJobStorage"]


class InMemoryJobStorage:
    """A `JobStorage` that keeps everything in this process's memory.

    `clock` is the store's one clock (the system clock by default); tests pass a
    `ManualClock` to expire leases and locks without sleeping.
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._jobs = JobTable()
        self._claims = Claims(self._jobs)
        self._schedules = ScheduleTable()
        self._locks = LockTable()
        self._workers = WorkerTable()
        self._wakeups = WakeupHub()

    def _now(self) -> datetime:
        return to_utc(self._clock.now())

    # ---- lifecycle ---------------------------------------------------------------------------

    async def init(self) -> None:
        """Nothing to create: the tables exist from construction on."""

    async def close(self) -> None:
        self._wakeups.clear()

    async def now(self) -> datetime:
        return self._now()

    # ---- jobs: write -------------------------------------------------------------------------

    async def insert_jobs(
        self, jobs: Sequence[NewJob], *, connection: Any = None
    ) -> list[InsertResult]:
        if connection is not None:
            raise TypeError(
                "InMemoryJobStorage has no transactions to join: pass connection=None "
                f"(got {type(connection).__name__})"
            )
        with self._lock:
            results = self._jobs.insert(jobs, self._now())
        if any(result.created for result in results):
            self._wakeups.notify()
        return results

    async def cancel_job(self, job_id: str, *, terminate: bool = False) -> CancelOutcome:
        with self._lock:
            return self._jobs.cancel(job_id, self._now(), terminate=terminate)

    async def retry_job(self, job_id: str) -> bool:
        with self._lock:
            retried = self._jobs.retry(job_id, self._now())
        if retried:
            self._wakeups.notify()
        return retried

    async def purge_jobs(self, params: PurgeParams) -> int:
        with self._lock:
            return self._jobs.purge(params, self._now())

    # ---- jobs: read --------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    async def list_jobs(self, query: JobQuery) -> list[Job]:
        with self._lock:
            return self._jobs.page(query)

    async def get_job_runs(self, job_id: str) -> list[JobRun]:
        with self._lock:
            return self._jobs.run_records(job_id)

    async def get_job_logs(self, job_id: str) -> list[JobLog]:
        with self._lock:
            return self._jobs.log_records(job_id)

    async def get_metrics(self) -> Metrics:
        with self._lock:
            return self._jobs.metrics()

    async def get_run_stats(self) -> list[RunStats]:
        with self._lock:
            return run_stats(run for runs in self._jobs.runs.values() for run in runs)

    async def count_finished_jobs(self, since: datetime, bucket: timedelta) -> list[FinishedCount]:
        with self._lock:
            return finished_counts(self._jobs.rows.values(), to_utc(since), bucket)

    # ---- claims ------------------------------------------------------------------------------

    async def claim_jobs(self, params: ClaimParams) -> list[ClaimedJob]:
        with self._lock:
            return self._claims.claim(params, self._now())

    async def renew_claims(self, refs: Sequence[ClaimRef], lease_ttl: timedelta) -> RenewResult:
        with self._lock:
            return self._claims.renew(refs, lease_ttl, self._now())

    async def complete_jobs(self, completions: Sequence[Completion]) -> list[datetime | None]:
        # Encode first: a result that is not JSON fails the call before anything changes.
        result_jsons = [dump_json(completion.result) for completion in completions]
        with self._lock:
            return self._claims.complete(completions, result_jsons, self._now())

    async def fail_job(self, failure: Failure) -> FailOutcome | None:
        with self._lock:
            outcome = self._claims.fail(failure, self._now())
        if outcome is not None and outcome.will_retry:
            self._wakeups.notify()
        return outcome

    async def release_jobs(self, refs: Sequence[ClaimRef]) -> list[bool]:
        with self._lock:
            released = self._claims.release(refs, self._now())
        if any(released):
            self._wakeups.notify()
        return released

    async def snooze_job(self, ref: ClaimRef, delay: timedelta) -> Job | None:
        with self._lock:
            job = self._claims.snooze(ref, delay, self._now())
        if job is not None and job.status is JobStatus.PENDING and delay <= timedelta(0):
            self._wakeups.notify()  # due at once: another worker may take it now
        return job

    async def update_progress(self, ref: ClaimRef, percent: float) -> bool:
        with self._lock:
            return self._claims.update_progress(ref, percent)

    async def append_logs(self, entries: Sequence[NewLogEntry]) -> None:
        with self._lock:
            self._jobs.append_logs(entries, self._now())

    # ---- maintenance -------------------------------------------------------------------------

    async def recover_expired_leases(self, limit: int = 100) -> list[FailOutcome]:
        with self._lock:
            outcomes = self._claims.recover_expired_leases(self._now(), limit)
        if any(outcome.will_retry for outcome in outcomes):
            self._wakeups.notify()
        return outcomes

    async def expire_jobs(self, limit: int = 100) -> list[Job]:
        with self._lock:
            return self._jobs.expire(self._now(), limit)

    # ---- locks and leadership ----------------------------------------------------------------

    async def acquire_lock(self, name: str, owner: str, ttl: timedelta) -> str | None:
        with self._lock:
            return self._locks.acquire(name, owner, ttl, self._now())

    async def renew_lock(self, name: str, token: str, ttl: timedelta) -> bool:
        with self._lock:
            return self._locks.renew(name, token, ttl, self._now())

    async def release_lock(self, name: str, token: str) -> bool:
        with self._lock:
            return self._locks.release(name, token)

    async def get_lock(self, name: str) -> LockInfo | None:
        with self._lock:
            return self._locks.get(name, self._now())

    # ---- workers -----------------------------------------------------------------------------

    async def heartbeat_worker(
        self, name: str, *, running: int, is_leader: bool, ttl: timedelta = DEFAULT_WORKER_TTL
    ) -> None:
        with self._lock:
            self._workers.heartbeat(name, running, is_leader, ttl, self._now())

    async def remove_worker(self, name: str) -> None:
        with self._lock:
            self._workers.remove(name)

    async def list_workers(self) -> list[WorkerInfo]:
        with self._lock:
            return self._workers.sorted_by_name(self._jobs.running.values())

    async def prune_workers(self) -> list[str]:
        with self._lock:
            now = self._now()
            removed = self._workers.prune(now)
            self._claims.end_leases_of(set(removed), now)
        return removed

    # ---- schedules ---------------------------------------------------------------------------

    async def upsert_schedule(self, spec: ScheduleSpec) -> ScheduledJob:
        with self._lock:
            return self._schedules.upsert(spec, self._now())

    async def get_schedule(self, name: str) -> ScheduledJob | None:
        with self._lock:
            return self._schedules.get(name)

    async def list_schedules(self) -> list[ScheduledJob]:
        with self._lock:
            return self._schedules.sorted_by_name()

    async def set_schedule_enabled(self, name: str, enabled: bool) -> bool:
        with self._lock:
            return self._schedules.set_enabled(name, enabled, self._now())

    async def delete_schedule(self, name: str) -> bool:
        with self._lock:
            return self._schedules.delete(name)

    async def get_due_schedules(self, limit: int = 100) -> DueSchedules:
        with self._lock:
            return self._schedules.due(self._now(), limit)

    async def advance_schedule(self, advance: ScheduleAdvance) -> AdvanceResult:
        with self._lock:
            result = self._advance(advance, self._now())
        if result.job_id is not None:
            self._wakeups.notify()
        return result

    def _advance(self, advance: ScheduleAdvance, now: datetime) -> AdvanceResult:
        schedule = self._schedules.by_id(advance.schedule_id)
        if schedule is None or schedule.next_run_at != to_utc(advance.expected_next_run_at):
            return AdvanceResult(advanced=False)  # another leader moved it first
        job_id: str | None = None
        skipped_overlap = False
        if advance.job is not None:
            if not advance.allow_overlap and self._jobs.has_active_job_of_schedule(schedule.id):
                skipped_overlap = True
            else:
                job = dataclasses.replace(
                    advance.job,
                    scheduled_job_id=advance.job.scheduled_job_id or schedule.id,
                    schedule_fire_at=advance.job.schedule_fire_at or advance.expected_next_run_at,
                )
                # Insert before touching the schedule: if it raises, nothing has changed.
                [inserted] = self._jobs.insert([job], now)
                if inserted.created:  # not created: this tick already has its job
                    job_id = inserted.id
                    assert job.schedule_fire_at is not None
                    schedule.last_scheduled_at = to_utc(job.schedule_fire_at)
        schedule.next_run_at = None if advance.next_run_at is None else to_utc(advance.next_run_at)
        if advance.disable:
            schedule.enabled = False
        schedule.updated_at = now
        return AdvanceResult(advanced=True, job_id=job_id, skipped_overlap=skipped_overlap)

    # ---- wake-ups ----------------------------------------------------------------------------

    def add_wakeup_listener(self, callback: WakeupCallback) -> Callable[[], None]:
        return self._wakeups.subscribe(callback)
