"""`PostgresBackend`: the engine of `PostgresJobStorage` (store.py says how it holds together).

The cross-process half of a wake-up is written here, as part of the write it announces: the
insert and release statements carry their own `pg_notify`, and a retry, a failure that will
retry and a recovered lease send one in the same connection or transaction. The in-process
half is the facade's (`storage/_facade.py`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import AsyncConnection

from timecrisis._sync import unwrap_connection
from timecrisis.clock import Clock
from timecrisis.errors import StorageError
from timecrisis.models import Job, JobLog, JobRun, Metrics, ScheduledJob, WorkerInfo
from timecrisis.rate_limits import RateLimit
from timecrisis.storage import base as b
from timecrisis.storage.postgres import _claims as claims
from timecrisis.storage.postgres import _coordination as coord
from timecrisis.storage.postgres import _jobs as jobs
from timecrisis.storage.postgres import _stats as stats
from timecrisis.storage.postgres._db import Conn, Context, fetch_value, pipelined_transaction
from timecrisis.storage.postgres._rows import utc
from timecrisis.storage.postgres._session import Session
from timecrisis.storage.postgres._sql import Queries
from timecrisis.storage.postgres.listener import NotificationListener

# Any statement: on a connection that is not in autocommit mode, psycopg opens the transaction
# before it, as it would before the caller's own next statement.
_OPEN_TRANSACTION = b"SELECT 1"


def _would_open_a_transaction(
    connection: psycopg.Connection[Any] | AsyncConnection[Any],
) -> bool:
    """Whether the caller's connection is outside autocommit with no transaction open yet (the
    first write in a Django `atomic()` block, a fresh psycopg connection): its next statement
    opens the transaction the caller will commit or roll back. `connection.transaction()` would
    instead open one of its own and commit it at once, so the job would outlive the caller's
    rollback. Opening it first makes the insert a savepoint of the caller's transaction."""
    return (
        not connection.autocommit
        and connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    )


class Listening:
    """The `RemoteWakeups` of a PostgreSQL store: its LISTEN connection. A stop is a task
    the store's `close()` waits for (so its connection is closed by then)."""

    def __init__(self, listener: NotificationListener) -> None:
        self.listener = listener
        self.stopping: list[asyncio.Task[None]] = []
        self.closed = False

    def start(self) -> None:
        if not self.closed:
            self.listener.start()

    def stop(self) -> None:
        task = self.listener.cancel()
        if task is not None:
            self.stopping.append(task)  # close() waits for its connection to close
            task.add_done_callback(self._forget_stopped)

    async def close(self) -> None:
        self.closed = True
        await self.listener.stop()
        stopping, self.stopping = self.stopping, []
        await asyncio.gather(*stopping, return_exceptions=True)

    def _forget_stopped(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(ValueError):
            self.stopping.remove(task)


class PostgresBackend:
    """One pool on one schema (a `Backend`, `CombinedBackend` and `TransactionalBackend`)."""

    def __init__(
        self, session: Session, schema: str, clock: Clock | None, notify: Listening | None = None
    ) -> None:
        self.session = session
        self.schema = schema
        self.clock = clock
        channel = f"timecrisis_{schema}"
        self.ctx = Context(Queries(schema), schema, channel)
        self.channel = channel
        self.listening = notify

    @property
    def _q(self) -> Queries:
        return self.ctx.queries

    def _now(self) -> datetime | None:
        """The `now` parameter of every statement: None means the database's `now()`."""
        return None if self.clock is None else self.clock.now()

    async def _notify(self, conn: AsyncConnection[Any]) -> None:
        await conn.execute(self._q["notify"], {"channel": self.ctx.channel})

    # ---- lifecycle ---------------------------------------------------------------------------

    async def init(self) -> None:
        await self.session.init()

    async def close(self) -> None:
        """Stop the listener and close the pool if the store created it. Idempotent."""
        if self.listening is not None:
            await self.listening.close()
        await self.session.close()

    async def now(self) -> datetime:
        if self.clock is not None:
            return self.clock.now()
        value = await self.session.read(
            "now", lambda conn: fetch_value(conn, self._q["db_now"], {"now": None})
        )
        assert isinstance(value, datetime)
        return utc(value)

    # ---- jobs --------------------------------------------------------------------------------

    async def insert_jobs(self, jobs_: Sequence[b.NewJob]) -> list[b.InsertResult]:
        batch = list(jobs_)
        if jobs.can_copy(batch):
            async with self.session.connection("insert") as conn, conn.transaction():
                return await jobs.copy_jobs(conn, self.ctx, batch, self._now())
        if jobs.may_conflict(batch):
            async with self.session.transaction("insert") as conn:
                return await jobs.insert_jobs(conn, self.ctx, batch, self._now())
        async with self.session.connection("insert") as conn:  # one statement: atomic alone
            return await jobs.insert_jobs(conn, self.ctx, batch, self._now())

    async def insert_job_stream(
        self, count: int, jobs_: Iterator[b.NewJob]
    ) -> list[b.InsertResult]:
        """`StreamedInsert.insert_job_stream`: a large batch is copied while the iterator
        still makes its jobs; a small one is made in full first and inserted as usual."""
        if count < jobs.COPY_MIN_BATCH:
            return await self.insert_jobs(list(jobs_))
        async with self.session.connection("insert") as conn, conn.transaction():
            return await jobs.copy_jobs(conn, self.ctx, jobs_, self._now())

    async def insert_in_transaction(
        self, connection: Any, jobs_: Sequence[b.NewJob]
    ) -> list[b.InsertResult]:
        """Insert within the caller's transaction: a psycopg `AsyncConnection` or
        `Connection`, or a Django connection (its psycopg one)."""
        if not isinstance(connection, AsyncConnection):
            connection = unwrap_connection(connection)
            if not isinstance(connection, psycopg.Connection):
                raise TypeError(
                    "connection= must be a psycopg Connection or AsyncConnection (your open "
                    f"transaction), or a Django connection; got {type(connection).__name__}"
                )
        batch = list(jobs_)
        if not batch:
            return []
        await self.session.init()  # the schema must exist before the caller's insert
        if isinstance(connection, psycopg.Connection):
            # Blocking I/O: off the loop, which other callers share (enqueue_sync's caller is
            # blocked meanwhile, so the connection is still used by one thread at a time).
            return await asyncio.to_thread(self.insert_jobs_sync, batch, connection)
        try:
            # A savepoint inside the caller's transaction (a transaction of its own if there is
            # none): a failed insert leaves the caller's transaction usable, their rollback
            # undoes the jobs, and the NOTIFY is delivered only when they commit.
            if _would_open_a_transaction(connection):
                await connection.execute(_OPEN_TRANSACTION)
            async with connection.transaction():
                return await jobs.insert_jobs(connection, self.ctx, batch, self._now())
        except psycopg.Error as exc:
            raise StorageError(f"PostgreSQL insert failed: {exc}") from exc

    def insert_jobs_sync(
        self, jobs_: Sequence[b.NewJob], connection: psycopg.Connection[Any]
    ) -> list[b.InsertResult]:
        """The blocking twin of `insert_in_transaction`, in the calling thread. The schema
        must exist (`init()` ran once)."""
        try:
            if _would_open_a_transaction(connection):
                connection.execute(_OPEN_TRANSACTION)
            with connection.transaction():
                return jobs.insert_jobs_sync(connection, self.ctx, list(jobs_), self._now())
        except psycopg.Error as exc:
            raise StorageError(f"PostgreSQL insert failed: {exc}") from exc

    async def cancel_job(self, job_id: str, terminate: bool) -> b.CancelOutcome:
        async with self.session.connection("cancel") as conn:
            return await jobs.cancel_job(conn, self.ctx, job_id, self._now(), terminate=terminate)

    async def retry_job(self, job_id: str) -> bool:
        async with self.session.connection("retry") as conn:
            retried = await jobs.retry_job(conn, self.ctx, job_id, self._now())
            if retried:  # after the retry committed: a separate statement is fine for a hint
                await self._notify(conn)
        return retried

    async def purge_jobs(self, params: b.PurgeParams) -> int:
        async with self.session.connection("purge") as conn:
            return await jobs.purge_jobs(conn, self.ctx, params, self._now())

    async def get_job(self, job_id: str) -> Job | None:
        return await self.session.read("get_job", lambda conn: jobs.get_job(conn, self.ctx, job_id))

    async def list_jobs(self, query: b.JobQuery) -> list[Job]:
        return await self.session.read(
            "list_jobs", lambda conn: jobs.list_jobs(conn, self.ctx, query)
        )

    async def get_job_runs(self, job_id: str) -> list[JobRun]:
        return await self.session.read(
            "get_job_runs", lambda conn: coord.get_job_runs(conn, self.ctx, job_id)
        )

    async def get_job_logs(self, job_id: str) -> list[JobLog]:
        return await self.session.read(
            "get_job_logs", lambda conn: coord.get_job_logs(conn, self.ctx, job_id)
        )

    async def get_metrics(self) -> Metrics:
        return await self.session.read(
            "get_metrics", lambda conn: coord.get_metrics(conn, self.ctx)
        )

    async def get_run_stats(self) -> list[b.RunStats]:
        return await self.session.read(
            "get_run_stats", lambda conn: stats.get_run_stats(conn, self.ctx)
        )

    async def count_finished_jobs(
        self, since: datetime, bucket: timedelta
    ) -> list[b.FinishedCount]:
        return await self.session.read(
            "count_finished_jobs",
            lambda conn: stats.count_finished_jobs(conn, self.ctx, since, bucket),
        )

    # ---- claims ------------------------------------------------------------------------------

    async def claim_jobs(self, params: b.ClaimParams) -> list[b.ClaimedJob]:
        async with self.session.claim_connection("claim") as conn:
            return await claims.claim_until_settled(
                lambda: self._claim_once(conn, params), self._promote
            )

    async def _claim_once(self, conn: Conn, params: b.ClaimParams) -> claims.Claims:
        if not claims.needs_type_locks(params):  # one statement: atomic on its own
            return await claims.claim_unlimited(conn, self.ctx, params, self._now())
        async with pipelined_transaction(conn):
            cursor = await claims.send_claim(conn, self.ctx, params, self._now())
        return await claims.read_claims(cursor)  # committed: one round trip in all

    async def _promote(self) -> None:
        """`promote_due`, on a connection of the main pool: custom plans (queries.sql)."""
        async with self.session.connection("promote_due") as conn:
            await claims.promote_due(conn, self.ctx, self._now())

    async def rate_limit_free_at(self, rate_limits: Mapping[str, RateLimit]) -> datetime | None:
        return await self.session.read(
            "rate_limit_free_at",
            lambda conn: claims.rate_limit_free_at(conn, self.ctx, rate_limits, self._now()),
        )

    async def complete_and_claim(
        self, completions: Sequence[b.Completion], params: b.ClaimParams
    ) -> tuple[list[datetime | None], list[b.ClaimedJob]]:
        """Both in ONE statement (no per-type limit involved) or one pipelined transaction
        (the limited claim needs its lock statement first): one round trip and one commit (one
        WAL flush) for both, where two separate calls pay two. With `synchronous_commit` on,
        the WAL flush is a large part of a call's time (docs/performance.md)."""
        now = self._now()
        async with self.session.claim_connection("complete_and_claim") as conn:
            if not claims.needs_type_locks(params):
                finished, claimed = await claims.complete_and_claim_unlimited(
                    conn, self.ctx, list(completions), params, now
                )
            else:
                async with pipelined_transaction(conn):
                    done = await claims.send_complete(conn, self.ctx, completions, now)
                    cursor = await claims.send_claim(conn, self.ctx, params, now)
                finished = await claims.read_complete(done, completions)
                claimed = await claims.read_claims(cursor)
            if not claimed.due:
                return finished, claimed.jobs
            # Delayed jobs came due: the completions are written, the claim took nothing.
            await self._promote()
            return finished, await claims.claim_until_settled(
                lambda: self._claim_once(conn, params), self._promote
            )

    async def renew_claims(self, refs: Sequence[b.ClaimRef], lease_ttl: timedelta) -> b.RenewResult:
        async with self.session.connection("renew") as conn:
            return await claims.renew_claims(conn, self.ctx, list(refs), lease_ttl, self._now())

    async def complete_jobs(self, completions: Sequence[b.Completion]) -> list[datetime | None]:
        async with self.session.connection("complete") as conn:
            return await claims.complete_jobs(conn, self.ctx, list(completions), self._now())

    async def fail_job(self, failure: b.Failure) -> b.FailOutcome | None:
        async with self.session.transaction("fail") as conn:
            outcome = await claims.fail_job(conn, self.ctx, failure, self._now())
            if outcome is not None and outcome.will_retry:
                await self._notify(conn)
        return outcome

    async def release_jobs(self, refs: Sequence[b.ClaimRef]) -> list[bool]:
        async with self.session.connection("release") as conn:  # the statement notifies
            return await claims.release_jobs(conn, self.ctx, list(refs), self._now())

    async def snooze_job(self, ref: b.ClaimRef, delay: timedelta) -> Job | None:
        async with self.session.connection("snooze") as conn:
            return await claims.snooze_job(conn, self.ctx, ref, delay, self._now())

    async def update_progress(self, ref: b.ClaimRef, percent: float) -> bool:
        async with self.session.connection("update_progress") as conn:
            return await claims.update_progress(conn, self.ctx, ref, percent)

    async def append_logs(self, entries: Sequence[b.NewLogEntry]) -> None:
        async with self.session.connection("append_logs") as conn:
            await coord.append_logs(conn, self.ctx, list(entries), self._now())

    # ---- maintenance -------------------------------------------------------------------------

    async def recover_expired_leases(self, limit: int) -> list[b.FailOutcome]:
        async with self.session.transaction("recover_expired_leases") as conn:
            # The leader's reaper round (every few seconds) also folds the count deltas the
            # workers appended, off their hot path, so a store whose metrics nobody reads keeps
            # its delta tables short.
            await stats.fold_counts(conn, self.ctx)
            outcomes = await claims.recover_expired_leases(conn, self.ctx, limit, self._now())
            if any(o.will_retry for o in outcomes):
                await self._notify(conn)
        return outcomes

    async def expire_jobs(self, limit: int) -> list[Job]:
        async with self.session.transaction("expire_jobs") as conn:
            return await claims.expire_jobs(conn, self.ctx, limit, self._now())

    # ---- flow control ------------------------------------------------------------------------

    async def pause(self, name: str) -> bool:
        async with self.session.connection("pause") as conn:
            return await coord.pause(conn, self.ctx, name, self._now())

    async def resume(self, name: str) -> bool:
        async with self.session.connection("resume") as conn:  # its NOTIFY rides in the DELETE
            return await coord.resume(conn, self.ctx, name)

    async def list_paused(self) -> list[str]:
        return await self.session.read(
            "list_paused", lambda conn: coord.list_paused(conn, self.ctx)
        )

    # ---- locks -------------------------------------------------------------------------------

    async def acquire_lock(self, name: str, owner: str, ttl: timedelta) -> str | None:
        async with self.session.connection("acquire_lock") as conn:
            return await coord.acquire_lock(conn, self.ctx, name, owner, ttl, self._now())

    async def renew_lock(self, name: str, token: str, ttl: timedelta) -> bool:
        async with self.session.connection("renew_lock") as conn:
            return await coord.renew_lock(conn, self.ctx, name, token, ttl, self._now())

    async def release_lock(self, name: str, token: str) -> bool:
        async with self.session.connection("release_lock") as conn:
            return await coord.release_lock(conn, self.ctx, name, token)

    async def get_lock(self, name: str) -> b.LockInfo | None:
        return await self.session.read(
            "get_lock", lambda conn: coord.get_lock(conn, self.ctx, name, self._now())
        )

    # ---- workers -----------------------------------------------------------------------------

    async def heartbeat_worker(
        self, name: str, running: int, is_leader: bool, ttl: timedelta
    ) -> None:
        async with self.session.connection("heartbeat_worker") as conn:
            await coord.heartbeat_worker(conn, self.ctx, name, running, is_leader, ttl, self._now())

    async def remove_worker(self, name: str) -> None:
        async with self.session.connection("remove_worker") as conn:
            await coord.remove_worker(conn, self.ctx, name)

    async def list_workers(self) -> list[WorkerInfo]:
        return await self.session.read(
            "list_workers", lambda conn: coord.list_workers(conn, self.ctx)
        )

    async def prune_workers(self) -> list[str]:
        async with self.session.connection("prune_workers") as conn:
            return await coord.prune_workers(conn, self.ctx, self._now())

    # ---- schedules ---------------------------------------------------------------------------

    async def upsert_schedule(self, spec: b.ScheduleSpec) -> ScheduledJob:
        async with self.session.transaction("upsert_schedule") as conn:
            return await coord.upsert_schedule(conn, self.ctx, spec, self._now())

    async def get_schedule(self, name: str) -> ScheduledJob | None:
        return await self.session.read(
            "get_schedule", lambda conn: coord.get_schedule(conn, self.ctx, name)
        )

    async def list_schedules(self) -> list[ScheduledJob]:
        return await self.session.read(
            "list_schedules", lambda conn: coord.list_schedules(conn, self.ctx)
        )

    async def set_schedule_enabled(self, name: str, enabled: bool) -> bool:
        async with self.session.connection("set_schedule_enabled") as conn:
            return await coord.set_schedule_enabled(conn, self.ctx, name, enabled, self._now())

    async def delete_schedule(self, name: str) -> bool:
        async with self.session.connection("delete_schedule") as conn:
            return await coord.delete_schedule(conn, self.ctx, name)

    async def get_due_schedules(self, limit: int) -> b.DueSchedules:
        return await self.session.read(
            "get_due_schedules",
            lambda conn: coord.get_due_schedules(conn, self.ctx, limit, self._now()),
        )

    async def advance_schedule(self, advance: b.ScheduleAdvance) -> b.AdvanceResult:
        async with self.session.transaction("advance_schedule") as conn:
            return await coord.advance_schedule(conn, self.ctx, advance, self._now())
