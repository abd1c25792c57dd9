"""`SQLiteJobStorage`: the embedded default. Several processes, and several schedulers in each,
share one file safely.

How it holds together (each module's docstring has the details):

- `_connection.py`: every handle owns one connection and one daemon thread. Each protocol
  method is ONE transaction function run in that thread (one thread hop per call, however many
  statements), writes under `BEGIN IMMEDIATE`, with the store's clock read once inside the
  transaction. SQLite's single writer then makes every decision atomic across processes: the
  claim and its per-type limits, fencing tokens, the leader lock, the schedule
  compare-and-set. WAL with `synchronous=NORMAL`: a commit survives the crash of any process.
- `_migrate.py`: versioned migrations, applied once per handle before its first call (so
  every method initialises the store lazily, `init()` included), safe when processes start
  together, refusing a schema newer than the code.
- `_claims.py`: the claim is one UPDATE over per-type queue heads; batches are set-based.
- `_watcher.py`: SQLite cannot push, so while someone listens for wake-ups a thread polls
  `PRAGMA data_version` every 20 ms. A job enqueued in another process is claimed here within
  about 20 to 50 ms; this handle's own inserts, releases and retries wake listeners at once.

A call whose caller is cancelled before its turn in the thread never runs; once it runs it
commits whatever happens to the caller (a transaction is never cut in half). A claim whose
caller went away that way leaves its jobs running until their lease expires and the reaper
retries them, the same path as a worker that died.
"""

from __future__ import annotations

import os
import sqlite3
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from timecrisis.clock import Clock, SystemClock
from timecrisis.errors import StorageError
from timecrisis.models import Job, JobLog, JobRun, JobStatus, Metrics, ScheduledJob, WorkerInfo
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
from timecrisis.storage.sqlite import _claims, _coordination, _history, _jobs, _schedules
from timecrisis.storage.sqlite._connection import ConnectionThread
from timecrisis.storage.sqlite._migrate import migrate, needs_migration
from timecrisis.storage.sqlite._watcher import DataVersionWatcher

DEFAULT_WAKEUP_POLL_INTERVAL = 0.02
"""Seconds between two looks at `PRAGMA data_version` while someone listens for wake-ups."""


class SQLiteJobStorage:
    """A `JobStorage` on one SQLite file, created with its schema on first use.

    `busy_timeout` (seconds) bounds how long a call waits for another process's write lock
    before raising `StorageError`. `clock` is for tests (the system clock by default);
    `wakeup_poll_interval` sets how often other processes' writes are looked for.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        busy_timeout: float = 30.0,
        wakeup_poll_interval: float = DEFAULT_WAKEUP_POLL_INTERVAL,
    ) -> None:
        if busy_timeout < 0:
            raise ValueError(f"busy_timeout must not be negative, got {busy_timeout}")
        if wakeup_poll_interval <= 0:
            raise ValueError(f"wakeup_poll_interval must be positive, got {wakeup_poll_interval}")
        self.path = Path(path)
        if str(self.path) == ":memory:":
            raise ValueError(
                "SQLiteJobStorage needs a file that processes can share; use "
                "InMemoryJobStorage for a store in memory"
            )
        # Absolute now, so a later chdir cannot point the connections at another file.
        file = self.path.absolute()
        self._clock: Clock = clock or SystemClock()
        self._db = ConnectionThread(
            file,
            clock=self._clock,
            busy_timeout=busy_timeout,
            setup=migrate,
            needs_setup=needs_migration,
        )
        self._hub = WakeupHub()
        self._watcher = DataVersionWatcher(file, wakeup_poll_interval, self._hub.notify)
        self._listeners = 0
        # A store dropped without close() still stops its threads and closes its connection.
        # Only the parts are referenced, never `self`, or the store could not be collected.
        self._finalizer = weakref.finalize(self, _abandon, self._db, self._watcher)
        self._finalizer.atexit = False  # at exit the daemon threads simply end with the process

    def __repr__(self) -> str:
        return f"SQLiteJobStorage({str(self.path)!r})"

    # ---- lifecycle ---------------------------------------------------------------------------

    async def init(self) -> None:
        await self._db.ready()

    async def close(self) -> None:
        self._hub.clear()
        self._watcher.stop()
        self._finalizer.detach()
        await self._db.close()
        self._watcher.join()  # it stops within one poll interval of being told to

    async def now(self) -> datetime:
        return self._clock.now()

    # ---- jobs: write -------------------------------------------------------------------------

    async def insert_jobs(
        self, jobs: Sequence[NewJob], *, connection: Any = None
    ) -> list[InsertResult]:
        if connection is not None:
            raise TypeError(
                "SQLiteJobStorage.insert_jobs() takes no connection=: inserting within an "
                "outside transaction is a PostgreSQL feature"
            )
        if not jobs:
            return []
        results = await self._db.write(lambda conn, now: _jobs.insert_jobs(conn, jobs, now))
        if any(result.created for result in results):
            self._hub.notify()
        return results

    async def cancel_job(self, job_id: str, *, terminate: bool = False) -> CancelOutcome:
        return await self._db.write(
            lambda conn, now: _jobs.cancel_job(conn, job_id, now, terminate=terminate)
        )

    async def retry_job(self, job_id: str) -> bool:
        retried = await self._db.write(lambda conn, now: _jobs.retry_job(conn, job_id, now))
        if retried:
            self._hub.notify()
        return retried

    async def purge_jobs(self, params: PurgeParams) -> int:
        return await self._db.write(lambda conn, now: _jobs.purge_jobs(conn, params, now))

    # ---- jobs: read --------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job | None:
        return await self._db.read(lambda conn, now: _jobs.get_job(conn, job_id))

    async def list_jobs(self, query: JobQuery) -> list[Job]:
        return await self._db.read(lambda conn, now: _jobs.list_jobs(conn, query))

    async def get_job_runs(self, job_id: str) -> list[JobRun]:
        return await self._db.read(lambda conn, now: _history.get_job_runs(conn, job_id))

    async def get_job_logs(self, job_id: str) -> list[JobLog]:
        return await self._db.read(lambda conn, now: _history.get_job_logs(conn, job_id))

    async def get_metrics(self) -> Metrics:
        return await self._db.read(lambda conn, now: _history.get_metrics(conn))

    async def get_run_stats(self) -> list[RunStats]:
        return await self._db.read(lambda conn, now: _history.get_run_stats(conn))

    async def count_finished_jobs(self, since: datetime, bucket: timedelta) -> list[FinishedCount]:
        return await self._db.read(
            lambda conn, now: _history.count_finished_jobs(conn, since, bucket)
        )

    # ---- claims ------------------------------------------------------------------------------

    async def claim_jobs(self, params: ClaimParams) -> list[ClaimedJob]:
        if params.limit <= 0 or not params.type_limits:
            return []
        return await self._db.write(lambda conn, now: _claims.claim_jobs(conn, params, now))

    async def complete_and_claim(
        self, completions: Sequence[Completion], params: ClaimParams
    ) -> tuple[list[datetime | None], list[ClaimedJob]]:
        """`complete_jobs(completions)`, then `claim_jobs(params)`, in ONE write transaction:
        one thread hop and one BEGIN IMMEDIATE/COMMIT for both, where two calls pay two (the
        worker's completions and its next claim fall due together). The claim sees the
        completions, so a type's freed slots count at once. All or nothing."""
        if not completions:
            return [], await self.claim_jobs(params)
        if params.limit <= 0 or not params.type_limits:
            return await self.complete_jobs(completions), []

        def both(
            conn: sqlite3.Connection, now: datetime
        ) -> tuple[list[datetime | None], list[ClaimedJob]]:
            return (
                _claims.complete_jobs(conn, completions, now),
                _claims.claim_jobs(conn, params, now),
            )

        return await self._db.write(both)

    async def renew_claims(self, refs: Sequence[ClaimRef], lease_ttl: timedelta) -> RenewResult:
        if not refs:
            return RenewResult(frozenset(), frozenset())
        return await self._db.write(
            lambda conn, now: _claims.renew_claims(conn, refs, lease_ttl, now)
        )

    async def complete_jobs(self, completions: Sequence[Completion]) -> list[datetime | None]:
        if not completions:
            return []
        return await self._db.write(lambda conn, now: _claims.complete_jobs(conn, completions, now))

    async def fail_job(self, failure: Failure) -> FailOutcome | None:
        outcome = await self._db.write(lambda conn, now: _claims.fail_job(conn, failure, now))
        if outcome is not None and outcome.will_retry:
            self._hub.notify()
        return outcome

    async def release_jobs(self, refs: Sequence[ClaimRef]) -> list[bool]:
        if not refs:
            return []
        released = await self._db.write(lambda conn, now: _claims.release_jobs(conn, refs, now))
        if any(released):
            self._hub.notify()
        return released

    async def snooze_job(self, ref: ClaimRef, delay: timedelta) -> Job | None:
        job = await self._db.write(lambda conn, now: _claims.snooze_job(conn, ref, delay, now))
        if job is not None and job.status is JobStatus.PENDING and delay <= timedelta(0):
            self._hub.notify()  # due at once: another worker may take it now
        return job

    async def update_progress(self, ref: ClaimRef, percent: float) -> bool:
        return await self._db.write(lambda conn, now: _claims.update_progress(conn, ref, percent))

    async def append_logs(self, entries: Sequence[NewLogEntry]) -> None:
        if entries:
            await self._db.write(lambda conn, now: _history.append_logs(conn, entries, now))

    # ---- maintenance -------------------------------------------------------------------------

    async def recover_expired_leases(self, limit: int = 100) -> list[FailOutcome]:
        outcomes = await self._db.write(
            lambda conn, now: _claims.recover_expired_leases(conn, limit, now)
        )
        if any(outcome.will_retry for outcome in outcomes):
            self._hub.notify()
        return outcomes

    async def expire_jobs(self, limit: int = 100) -> list[Job]:
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

    async def get_lock(self, name: str) -> LockInfo | None:
        return await self._db.read(lambda conn, now: _coordination.get_lock(conn, name, now))

    # ---- workers -----------------------------------------------------------------------------

    async def heartbeat_worker(
        self, name: str, *, running: int, is_leader: bool, ttl: timedelta = DEFAULT_WORKER_TTL
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

    async def upsert_schedule(self, spec: ScheduleSpec) -> ScheduledJob:
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

    async def get_due_schedules(self, limit: int = 100) -> DueSchedules:
        return await self._db.read(lambda conn, now: _schedules.get_due_schedules(conn, limit, now))

    async def advance_schedule(self, advance: ScheduleAdvance) -> AdvanceResult:
        result = await self._db.write(
            lambda conn, now: _schedules.advance_schedule(conn, advance, now)
        )
        if result.job_id is not None:
            self._hub.notify()
        return result

    # ---- wake-ups ----------------------------------------------------------------------------

    def add_wakeup_listener(self, callback: WakeupCallback) -> Callable[[], None]:
        """`callback` runs on the subscribing loop after this handle inserts, releases or
        retries jobs, and within about one poll interval after any other connection to the
        file (another handle, another process) commits."""
        if self._db.closed:
            raise StorageError(f"the SQLite store on {self.path} is closed")
        unsubscribe = self._hub.subscribe(callback)
        self._listeners += 1
        self._watcher.start()
        subscribed = True

        def remove() -> None:
            nonlocal subscribed
            if not subscribed:
                return
            subscribed = False
            unsubscribe()
            self._listeners -= 1
            if self._listeners == 0:
                self._watcher.stop()

        return remove


def _abandon(db: ConnectionThread, watcher: DataVersionWatcher) -> None:
    watcher.stop()
    db.shutdown_nowait()
