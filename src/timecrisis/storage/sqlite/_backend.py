"""`SQLiteBackend`: the engine of `SQLiteJobStorage` (store.py says how it holds together).
Each method is ONE transaction function run in the connection's thread."""

from __future__ import annotations

import sqlite3
import weakref
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from timecrisis.clock import Clock
from timecrisis.errors import StorageError
from timecrisis.models import Job, JobLog, JobRun, Metrics, ScheduledJob, WorkerInfo
from timecrisis.rate_limits import RateLimit
from timecrisis.storage import base as b
from timecrisis.storage.sqlite import _claims, _coordination, _history, _jobs, _schedules
from timecrisis.storage.sqlite._connection import ConnectionThread
from timecrisis.storage.sqlite._migrate import migrate, needs_migration
from timecrisis.storage.sqlite._watcher import DataVersionWatcher


class Watching:
    """The `RemoteWakeups` of a SQLite store: its `data_version` watcher, refused once the
    store is closed."""

    def __init__(self, db: ConnectionThread, watcher: DataVersionWatcher, path: Path) -> None:
        self._db = db
        self._watcher = watcher
        self._path = path

    def start(self) -> None:
        if self._db.closed:
            raise StorageError(f"the SQLite store on {self._path} is closed")
        self._watcher.start()

    def stop(self) -> None:
        self._watcher.stop()


class SQLiteBackend:
    """One connection thread on one file (a `Backend`, and a `CombinedBackend`)."""

    def __init__(
        self, file: Path, clock: Clock, busy_timeout: float, watcher: DataVersionWatcher
    ) -> None:
        self._clock = clock
        self._db = ConnectionThread(
            file,
            clock=clock,
            busy_timeout=busy_timeout,
            setup=migrate,
            needs_setup=needs_migration,
        )
        self._watcher = watcher
        self.watching = Watching(self._db, watcher, file)
        # A store dropped without close() still stops its threads and closes its connection.
        # Only the parts are referenced, never `self`, or the store could not be collected.
        self._finalizer = weakref.finalize(self, _abandon, self._db, self._watcher)
        self._finalizer.atexit = False  # at exit the daemon threads simply end with the process

    # ---- lifecycle ---------------------------------------------------------------------------

    async def init(self) -> None:
        await self._db.ready()

    async def close(self) -> None:
        self._watcher.stop()
        self._finalizer.detach()
        await self._db.close()
        self._watcher.join()  # it stops within one poll interval of being told to

    async def now(self) -> datetime:
        return self._clock.now()

    # ---- jobs: write -------------------------------------------------------------------------

    async def insert_jobs(self, jobs: Sequence[b.NewJob]) -> list[b.InsertResult]:
        return await self._db.write(lambda conn, now: _jobs.insert_jobs(conn, jobs, now))

    async def cancel_job(self, job_id: str, terminate: bool) -> b.CancelOutcome:
        return await self._db.write(
            lambda conn, now: _jobs.cancel_job(conn, job_id, now, terminate=terminate)
        )

    async def retry_job(self, job_id: str) -> bool:
        return await self._db.write(lambda conn, now: _jobs.retry_job(conn, job_id, now))

    async def purge_jobs(self, params: b.PurgeParams) -> int:
        return await self._db.write(lambda conn, now: _jobs.purge_jobs(conn, params, now))

    # ---- jobs: read --------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job | None:
        return await self._db.read(lambda conn, now: _jobs.get_job(conn, job_id))

    async def list_jobs(self, query: b.JobQuery) -> list[Job]:
        return await self._db.read(lambda conn, now: _jobs.list_jobs(conn, query))

    async def get_job_runs(self, job_id: str) -> list[JobRun]:
        return await self._db.read(lambda conn, now: _history.get_job_runs(conn, job_id))

    async def get_job_logs(self, job_id: str) -> list[JobLog]:
        return await self._db.read(lambda conn, now: _history.get_job_logs(conn, job_id))

    async def get_metrics(self) -> Metrics:
        return await self._db.read(lambda conn, now: _history.get_metrics(conn))

    async def get_run_stats(self) -> list[b.RunStats]:
        return await self._db.read(lambda conn, now: _history.get_run_stats(conn))

    async def count_finished_jobs(
        self, since: datetime, bucket: timedelta
    ) -> list[b.FinishedCount]:
        return await self._db.read(
            lambda conn, now: _history.count_finished_jobs(conn, since, bucket)
        )

    # ---- claims ------------------------------------------------------------------------------

    async def claim_jobs(self, params: b.ClaimParams) -> list[b.ClaimedJob]:
        return await self._db.write(lambda conn, now: _claims.claim_jobs(conn, params, now))

    async def rate_limit_free_at(self, rate_limits: Mapping[str, RateLimit]) -> datetime | None:
        return await self._db.read(
            lambda conn, now: _claims.rate_limit_free_at(conn, rate_limits, now)
        )

    async def complete_and_claim(
        self, completions: Sequence[b.Completion], params: b.ClaimParams
    ) -> tuple[list[datetime | None], list[b.ClaimedJob]]:
        """Both in ONE write transaction: one thread hop and one BEGIN IMMEDIATE/COMMIT for
        both, where two calls pay two (the worker's completions and its next claim fall due
        together). The claim sees the completions, so a type's freed slots count at once."""

        def both(
            conn: sqlite3.Connection, now: datetime
        ) -> tuple[list[datetime | None], list[b.ClaimedJob]]:
            return (
                _claims.complete_jobs(conn, completions, now),
                _claims.claim_jobs(conn, params, now),
            )

        return await self._db.write(both)

    # ---- flow control ------------------------------------------------------------------------

    async def pause(self, name: str) -> bool:
        return await self._db.write(lambda conn, now: _coordination.pause(conn, name, now))

    async def resume(self, name: str) -> bool:
        return await self._db.write(lambda conn, now: _coordination.resume(conn, name))

    async def list_paused(self) -> list[str]:
        return await self._db.read(lambda conn, now: _coordination.list_paused(conn))

    async def renew_claims(self, refs: Sequence[b.ClaimRef], lease_ttl: timedelta) -> b.RenewResult:
        return await self._db.write(
            lambda conn, now: _claims.renew_claims(conn, refs, lease_ttl, now)
        )

    async def complete_jobs(self, completions: Sequence[b.Completion]) -> list[datetime | None]:
        return await self._db.write(lambda conn, now: _claims.complete_jobs(conn, completions, now))

    async def fail_job(self, failure: b.Failure) -> b.FailOutcome | None:
        return await self._db.write(lambda conn, now: _claims.fail_job(conn, failure, now))

    async def release_jobs(self, refs: Sequence[b.ClaimRef]) -> list[bool]:
        return await self._db.write(lambda conn, now: _claims.release_jobs(conn, refs, now))

    async def snooze_job(self, ref: b.ClaimRef, delay: timedelta) -> Job | None:
        return await self._db.write(lambda conn, now: _claims.snooze_job(conn, ref, delay, now))

    async def update_progress(self, ref: b.ClaimRef, percent: float) -> bool:
        return await self._db.write(lambda conn, now: _claims.update_progress(conn, ref, percent))

    async def append_logs(self, entries: Sequence[b.NewLogEntry]) -> None:
        await self._db.write(lambda conn, now: _history.append_logs(conn, entries, now))

    # ---- maintenance -------------------------------------------------------------------------

    async def recover_expired_leases(self, limit: int) -> list[b.FailOutcome]:
        return await self._db.write(
            lambda conn, now: _claims.recover_expired_leases(conn, limit, now)
        )

    async def expire_jobs(self, limit: int) -> list[Job]:
        return await self._db.write(lambda conn, now: _jobs.expire_jobs(conn, limit, now))

    # ---- locks -------------------------------------------------------------------------------

    async def acquire_lock(self, name: str, owner: str, ttl: timedelta) -> str | None:
        return await self._db.write(
            lambda conn, now: _coordination.acquire_lock(conn, name, owner, ttl, now)
        )

    async def renew_lock(self, name: str, token: str, ttl: timedelta) -> bool:
        return await self._db.write(
            lambda conn, now: _coordination.renew_lock(conn, name, token, ttl, now)
        )

    async def release_lock(self, name: str, token: str) -> bool:
        return await self._db.write(lambda conn, now: _coordination.release_lock(conn, name, token))

    async def get_lock(self, name: str) -> b.LockInfo | None:
        return await self._db.read(lambda conn, now: _coordination.get_lock(conn, name, now))

    # ---- workers -----------------------------------------------------------------------------

    async def heartbeat_worker(
        self, name: str, running: int, is_leader: bool, ttl: timedelta
    ) -> None:
        await self._db.write(
            lambda conn, now: _coordination.heartbeat_worker(
                conn, name, running, is_leader, ttl, now
            )
        )

    async def remove_worker(self, name: str) -> None:
        await self._db.write(lambda conn, now: _coordination.remove_worker(conn, name))

    async def list_workers(self) -> list[WorkerInfo]:
        return await self._db.read(lambda conn, now: _coordination.list_workers(conn))

    async def prune_workers(self) -> list[str]:
        return await self._db.write(lambda conn, now: _coordination.prune_workers(conn, now))

    # ---- schedules ---------------------------------------------------------------------------

    async def upsert_schedule(self, spec: b.ScheduleSpec) -> ScheduledJob:
        return await self._db.write(lambda conn, now: _schedules.upsert_schedule(conn, spec, now))

    async def get_schedule(self, name: str) -> ScheduledJob | None:
        return await self._db.read(lambda conn, now: _schedules.get_schedule(conn, name))

    async def list_schedules(self) -> list[ScheduledJob]:
        return await self._db.read(lambda conn, now: _schedules.list_schedules(conn))

    async def set_schedule_enabled(self, name: str, enabled: bool) -> bool:
        return await self._db.write(
            lambda conn, now: _schedules.set_schedule_enabled(conn, name, enabled, now)
        )

    async def delete_schedule(self, name: str) -> bool:
        return await self._db.write(lambda conn, now: _schedules.delete_schedule(conn, name))

    async def get_due_schedules(self, limit: int) -> b.DueSchedules:
        return await self._db.read(lambda conn, now: _schedules.get_due_schedules(conn, limit, now))

    async def advance_schedule(self, advance: b.ScheduleAdvance) -> b.AdvanceResult:
        return await self._db.write(
            lambda conn, now: _schedules.advance_schedule(conn, advance, now)
        )


def _abandon(db: ConnectionThread, watcher: DataVersionWatcher) -> None:
    watcher.stop()
    db.shutdown_nowait()
