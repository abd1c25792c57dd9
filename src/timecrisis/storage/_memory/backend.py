"""`MemoryBackend`: the engine of `InMemoryJobStorage` (memory.py says how it holds together)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from timecrisis.clock import Clock
from timecrisis.models import Job, JobLog, JobRun, Metrics, ScheduledJob, WorkerInfo
from timecrisis.rate_limits import RateLimit
from timecrisis.storage import base as b
from timecrisis.storage._common import dump_json, to_utc
from timecrisis.storage._memory.claims import Claims
from timecrisis.storage._memory.coordination import LockTable, WorkerTable
from timecrisis.storage._memory.jobs import JobTable
from timecrisis.storage._memory.schedules import ScheduleTable
from timecrisis.storage._memory.stats import finished_counts, run_stats


class MemoryBackend:
    """The in-memory engine behind `InMemoryJobStorage` (a `Backend` of `storage._facade`):
    every method runs synchronously under one `threading.Lock` (see memory.py)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._jobs = JobTable()
        self._claims = Claims(self._jobs)
        self._schedules = ScheduleTable()
        self._locks = LockTable()
        self._workers = WorkerTable()
        self._paused: set[str] = set()  # paused job types and queues (docs/flow-control.md)

    def _now(self) -> datetime:
        return to_utc(self._clock.now())

    # ---- lifecycle ---------------------------------------------------------------------------

    async def init(self) -> None:
        """Nothing to create: the tables exist from construction on."""

    async def close(self) -> None:
        """The data stays usable: only the facade's listeners are dropped."""

    async def now(self) -> datetime:
        return self._now()

    # ---- jobs: write -------------------------------------------------------------------------

    async def insert_jobs(self, jobs: Sequence[b.NewJob]) -> list[b.InsertResult]:
        with self._lock:
            return self._jobs.insert(jobs, self._now())

    async def cancel_job(self, job_id: str, terminate: bool) -> b.CancelOutcome:
        with self._lock:
            return self._jobs.cancel(job_id, self._now(), terminate=terminate)

    async def retry_job(self, job_id: str) -> bool:
        with self._lock:
            return self._jobs.retry(job_id, self._now())

    async def purge_jobs(self, params: b.PurgeParams) -> int:
        with self._lock:
            return self._jobs.purge(params, self._now())

    # ---- jobs: read --------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    async def list_jobs(self, query: b.JobQuery) -> list[Job]:
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

    async def get_run_stats(self) -> list[b.RunStats]:
        with self._lock:
            return run_stats(run for runs in self._jobs.runs.values() for run in runs)

    async def count_finished_jobs(
        self, since: datetime, bucket: timedelta
    ) -> list[b.FinishedCount]:
        with self._lock:
            return finished_counts(self._jobs.rows.values(), to_utc(since), bucket)

    # ---- claims ------------------------------------------------------------------------------

    async def claim_jobs(self, params: b.ClaimParams) -> list[b.ClaimedJob]:
        with self._lock:
            return self._claims.claim(params, self._now(), self._paused)

    async def rate_limit_free_at(self, rate_limits: Mapping[str, RateLimit]) -> datetime | None:
        with self._lock:
            return self._claims.rates.free_at(rate_limits, self._now())

    async def renew_claims(self, refs: Sequence[b.ClaimRef], lease_ttl: timedelta) -> b.RenewResult:
        with self._lock:
            return self._claims.renew(refs, lease_ttl, self._now())

    async def complete_jobs(self, completions: Sequence[b.Completion]) -> list[datetime | None]:
        # Encode first: a result that is not JSON fails the call before anything changes.
        result_jsons = [dump_json(completion.result) for completion in completions]
        with self._lock:
            return self._claims.complete(completions, result_jsons, self._now())

    async def fail_job(self, failure: b.Failure) -> b.FailOutcome | None:
        with self._lock:
            return self._claims.fail(failure, self._now())

    async def release_jobs(self, refs: Sequence[b.ClaimRef]) -> list[bool]:
        with self._lock:
            return self._claims.release(refs, self._now())

    async def snooze_job(self, ref: b.ClaimRef, delay: timedelta) -> Job | None:
        with self._lock:
            return self._claims.snooze(ref, delay, self._now())

    async def update_progress(self, ref: b.ClaimRef, percent: float) -> bool:
        with self._lock:
            return self._claims.update_progress(ref, percent)

    async def append_logs(self, entries: Sequence[b.NewLogEntry]) -> None:
        with self._lock:
            self._jobs.append_logs(entries, self._now())

    # ---- flow control ------------------------------------------------------------------------

    async def pause(self, name: str) -> bool:
        with self._lock:
            if name in self._paused:
                return False
            self._paused.add(name)
            return True

    async def resume(self, name: str) -> bool:
        with self._lock:
            if name not in self._paused:
                return False
            self._paused.discard(name)
            return True

    async def list_paused(self) -> list[str]:
        with self._lock:
            return sorted(self._paused)

    # ---- maintenance -------------------------------------------------------------------------

    async def recover_expired_leases(self, limit: int) -> list[b.FailOutcome]:
        with self._lock:
            return self._claims.recover_expired_leases(self._now(), limit)

    async def expire_jobs(self, limit: int) -> list[Job]:
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

    async def get_lock(self, name: str) -> b.LockInfo | None:
        with self._lock:
            return self._locks.get(name, self._now())

    # ---- workers -----------------------------------------------------------------------------

    async def heartbeat_worker(
        self, name: str, running: int, is_leader: bool, ttl: timedelta
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

    async def upsert_schedule(self, spec: b.ScheduleSpec) -> ScheduledJob:
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

    async def get_due_schedules(self, limit: int) -> b.DueSchedules:
        with self._lock:
            return self._schedules.due(self._now(), limit)

    async def advance_schedule(self, advance: b.ScheduleAdvance) -> b.AdvanceResult:
        with self._lock:
            return self._advance(advance, self._now())

    def _advance(self, advance: b.ScheduleAdvance, now: datetime) -> b.AdvanceResult:
        schedule = self._schedules.by_id(advance.schedule_id)
        if schedule is None or schedule.next_run_at != to_utc(advance.expected_next_run_at):
            return b.AdvanceResult(advanced=False)  # another leader moved it first
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
        return b.AdvanceResult(advanced=True, job_id=job_id, skipped_overlap=skipped_overlap)
