"""`SQLiteJobStorage`: the embedded default. Several processes and schedulers share one file.

Every method is one transaction on this handle's private connection thread (see
`_connection.py`); SQLite's single writer plus `BEGIN IMMEDIATE` makes each write transaction
atomic across processes, which is what the claim, the per-type limits, the schedule
compare-and-set and the lock calls rely on. Time is this store's `clock` (the system clock by
default), read once per call.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from timecrisis.clock import Clock, SystemClock
from timecrisis.models import Job, JobLog, JobRun, Metrics, ScheduledJob, WorkerInfo
from timecrisis.storage._wakeups import WakeupHub
from timecrisis.storage.base import (
    AdvanceResult,
    CancelOutcome,
    ClaimedJob,
    ClaimParams,
    ClaimRef,
    Completion,
    DueSchedules,
    FailOutcome,
    Failure,
    InsertResult,
    JobQuery,
    LockInfo,
    NewJob,
    NewLogEntry,
    PurgeParams,
    RenewResult,
    ScheduleAdvance,
    ScheduleSpec,
    WakeupCallback,
)
from timecrisis.storage.sqlite import _coordination as coord
from timecrisis.storage.sqlite import _jobs as jobs
from timecrisis.storage.sqlite._connection import ConnectionThread
from timecrisis.storage.sqlite._migrate import migrate
from timecrisis.storage.sqlite._watcher import DataVersionWatcher

T = TypeVar("T")


class SQLiteJobStorage:
    """A `JobStorage` on one SQLite file (created with its schema on first use)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        busy_timeout: float = 30.0,
        wakeup_poll_interval: float = 0.02,
    ) -> None:
        self.path = Path(path)
        self._clock = clock or SystemClock()
        self._db = ConnectionThread(self.path, busy_timeout)
        self._hub = WakeupHub()
        self._watcher = DataVersionWatcher(self.path, wakeup_poll_interval, self._hub.notify)
        self._listeners = 0
        self._ready = False
        self._init_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"SQLiteJobStorage({str(self.path)!r})"

    # ---- lifecycle ---------------------------------------------------------------------------

    async def init(self) -> None:
        if self._ready:
            return
        async with self._init_lock:
            if not self._ready:
                await self._db.write(functools.partial(migrate, now=self._clock.now()))
                self._ready = True

    async def close(self) -> None:
        self._hub.clear()
        self._watcher.stop()
        await self._db.close()

    async def now(self) -> datetime:
        return self._clock.now()

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        await self.init()
        now = self._clock.now()
        return await self._db.write(lambda conn: fn(conn, *args, now))

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        await self.init()
        return await self._db.read(lambda conn: fn(conn, *args))

    # ---- jobs --------------------------------------------------------------------------------

    async def insert_jobs(
        self, jobs_: Sequence[NewJob], *, connection: Any = None
    ) -> list[InsertResult]:
        if connection is not None:
            raise TypeError("SQLiteJobStorage does not take a connection= (PostgreSQL only)")
        if not jobs_:
            return []
        results = await self._write(jobs.insert_jobs, list(jobs_))
        if any(r.created for r in results):
            self._hub.notify()
        return results

    async def cancel_job(self, job_id: str) -> CancelOutcome:
        return await self._write(jobs.cancel_job, job_id)

    async def retry_job(self, job_id: str) -> bool:
        retried = await self._write(jobs.retry_job, job_id)
        if retried:
            self._hub.notify()
        return retried

    async def purge_jobs(self, params: PurgeParams) -> int:
        return await self._write(jobs.purge_jobs, params)

    async def get_job(self, job_id: str) -> Job | None:
        return await self._read(jobs.fetch_job, job_id)

    async def list_jobs(self, query: JobQuery) -> list[Job]:
        return await self._read(jobs.list_jobs, query)

    async def get_job_runs(self, job_id: str) -> list[JobRun]:
        return await self._read(coord.get_job_runs, job_id)

    async def get_job_logs(self, job_id: str) -> list[JobLog]:
        return await self._read(coord.get_job_logs, job_id)

    async def get_metrics(self) -> Metrics:
        return await self._read(coord.get_metrics)

    # ---- claims ------------------------------------------------------------------------------

    async def claim_jobs(self, params: ClaimParams) -> list[ClaimedJob]:
        return await self._write(jobs.claim_jobs, params)

    async def renew_claims(self, refs: Sequence[ClaimRef], lease_ttl: timedelta) -> RenewResult:
        if not refs:
            return RenewResult(frozenset(), frozenset())
        return await self._write(jobs.renew_claims, list(refs), lease_ttl)

    async def complete_jobs(self, completions: Sequence[Completion]) -> list[datetime | None]:
        if not completions:
            return []
        return await self._write(jobs.complete_jobs, list(completions))

    async def fail_job(self, failure: Failure) -> FailOutcome | None:
        outcome = await self._write(jobs.fail_job, failure)
        if outcome is not None and outcome.will_retry:
            self._hub.notify()
        return outcome

    async def release_jobs(self, refs: Sequence[ClaimRef]) -> list[bool]:
        if not refs:
            return []
        results = await self._write(jobs.release_jobs, list(refs))
        if any(results):
            self._hub.notify()
        return results

    async def update_progress(self, ref: ClaimRef, percent: float) -> bool:
        await self.init()
        return await self._db.write(lambda conn: jobs.update_progress(conn, ref, percent))

    async def append_logs(self, entries: Sequence[NewLogEntry]) -> None:
        if entries:
            await self._write(coord.append_logs, list(entries))

    # ---- maintenance -------------------------------------------------------------------------

    async def recover_expired_leases(self, limit: int = 100) -> list[FailOutcome]:
        outcomes = await self._write(jobs.recover_expired_leases, limit)
        if any(o.will_retry for o in outcomes):
            self._hub.notify()
        return outcomes

    async def expire_jobs(self, limit: int = 100) -> list[Job]:
        return await self._write(jobs.expire_jobs, limit)

    # ---- locks -------------------------------------------------------------------------------

    async def acquire_lock(self, name: str, owner: str, ttl: timedelta) -> str | None:
        return await self._write(coord.acquire_lock, name, owner, ttl)

    async def renew_lock(self, name: str, token: str, ttl: timedelta) -> bool:
        return await self._write(coord.renew_lock, name, token, ttl)

    async def release_lock(self, name: str, token: str) -> bool:
        await self.init()
        return await self._db.write(lambda conn: coord.release_lock(conn, name, token))

    async def get_lock(self, name: str) -> LockInfo | None:
        await self.init()
        now = self._clock.now()
        return await self._db.read(lambda conn: coord.get_lock(conn, name, now))

    # ---- workers -----------------------------------------------------------------------------

    async def heartbeat_worker(self, name: str, *, running: int, is_leader: bool) -> None:
        await self._write(coord.heartbeat_worker, name, running, is_leader)

    async def remove_worker(self, name: str) -> None:
        await self.init()
        await self._db.write(
            lambda conn: conn.execute("DELETE FROM workers WHERE name = ?", (name,))
        )

    async def list_workers(self) -> list[WorkerInfo]:
        return await self._read(coord.list_workers)

    async def prune_workers(self, inactive_for: timedelta) -> list[str]:
        return await self._write(coord.prune_workers, inactive_for)

    # ---- schedules ---------------------------------------------------------------------------

    async def upsert_schedule(self, spec: ScheduleSpec) -> ScheduledJob:
        return await self._write(coord.upsert_schedule, spec)

    async def get_schedule(self, name: str) -> ScheduledJob | None:
        return await self._read(coord.get_schedule, name)

    async def list_schedules(self) -> list[ScheduledJob]:
        return await self._read(coord.list_schedules)

    async def set_schedule_enabled(self, name: str, enabled: bool) -> bool:
        return await self._write(coord.set_schedule_enabled, name, enabled)

    async def delete_schedule(self, name: str) -> bool:
        await self.init()
        return await self._db.write(lambda conn: coord.delete_schedule(conn, name))

    async def get_due_schedules(self, limit: int = 100) -> DueSchedules:
        await self.init()
        now = self._clock.now()
        return await self._db.read(lambda conn: coord.get_due_schedules(conn, limit, now))

    async def advance_schedule(self, advance: ScheduleAdvance) -> AdvanceResult:
        result = await self._write(coord.advance_schedule, advance)
        if result.job_id is not None:
            self._hub.notify()
        return result

    # ---- wake-ups ----------------------------------------------------------------------------

    def add_wakeup_listener(self, callback: WakeupCallback) -> Callable[[], None]:
        """Local writes notify at once; writes from other processes are seen by a watcher thread
        that polls `PRAGMA data_version` (it changes only when another connection commits),
        so a job enqueued elsewhere starts within about `wakeup_poll_interval` plus a claim."""
        unsubscribe = self._hub.subscribe(callback)
        self._listeners += 1
        self._watcher.start()
        done = False

        def remove() -> None:
            nonlocal done
            if done:
                return
            done = True
            unsubscribe()
            self._listeners -= 1
            if self._listeners == 0:
                self._watcher.stop()

        return remove
