"""`PostgresJobStorage`: many nodes on one PostgreSQL database.

- Tables live in their own schema (default `timecrisis`); versioned migrations run on first use
  under a transaction-scoped advisory lock, so ten nodes booting together migrate exactly once
  (`_migrate.py`).
- A claim is one statement per batch with `FOR UPDATE SKIP LOCKED`; cluster-wide per-type limits
  serialize the claimers of a limited type on a per-type advisory transaction lock
  (`queries.sql`, `claim_jobs`). A worker's completions ride on its next claim
  (`complete_and_claim`): one commit for both.
- Every time comparison uses the database's `now()` (unless a test clock is injected), so nodes
  with skewed clocks stay safe.
- `LISTEN/NOTIFY` wakes idle workers on every node when jobs are inserted, released or retried;
  a notification is only a hint (`listener.py`).
- `insert_jobs(..., connection=conn)` inserts inside the caller's transaction: if the caller
  rolls back there is no job, and the notification goes out when the caller commits.
- Every psycopg error surfaces as `StorageError` (the driver's exception as `__cause__`). After
  a connection-level error the pool is checked and dead connections are replaced, so a restarted
  server or a `pg_terminate_backend` costs the calls in flight, not the worker. Reads are retried
  once on a fresh connection; writes are not (the caller cannot know whether they committed,
  and every write here is safe to retry at the caller's level: fenced or idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from timecrisis._sync import unwrap_connection
from timecrisis.clock import Clock
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
from timecrisis.storage.postgres import _claims as claims
from timecrisis.storage.postgres import _coordination as coord
from timecrisis.storage.postgres import _jobs as jobs
from timecrisis.storage.postgres import _stats as stats
from timecrisis.storage.postgres._db import Context, fetch_value
from timecrisis.storage.postgres._migrate import current_version
from timecrisis.storage.postgres._rows import utc
from timecrisis.storage.postgres._session import Session
from timecrisis.storage.postgres._sql import Queries
from timecrisis.storage.postgres.listener import NotificationListener

# Lowercase, so the name means the same quoted or not in hand-written SQL; at most 50
# characters, so the NOTIFY channel derived from it fits PostgreSQL's 63-byte names.
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,49}$")


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


class InvalidSchemaNameError(StorageError, ValueError):
    """The schema name is not a plain lowercase identifier."""


class PostgresJobStorage:
    """A `JobStorage` on PostgreSQL (psycopg 3, async, pooled).

    `dsn_or_pool`: a libpq DSN or URL (the store then owns a pool of `min_pool_size` to
    `max_pool_size` connections, opened by `init()` and closed by `close()`), or an
    `AsyncConnectionPool` of yours (used as it is, opened if needed, never closed by the store).
    `schema`: where the tables live. `clock`: for tests only; by default every time comparison
    uses the database's `now()`. `connect_timeout` (seconds, default 10 unless the DSN sets
    one): how long one connection attempt may take; a store whose first use finds the server
    unreachable fails within it, with libpq's reason ("Connection refused", "timeout
    expired") in the `StorageError`.
    """

    def __init__(
        self,
        dsn_or_pool: str | AsyncConnectionPool[Any],
        *,
        schema: str = "timecrisis",
        clock: Clock | None = None,
        min_pool_size: int = 1,
        max_pool_size: int = 10,
        connect_timeout: float | None = None,
    ) -> None:
        if not isinstance(schema, str) or not _SCHEMA_NAME.match(schema):
            raise InvalidSchemaNameError(
                f"invalid PostgreSQL schema name {schema!r}: use 1 to 50 lowercase letters, "
                "digits and underscores, not starting with a digit"
            )
        self.schema = schema
        self._clock = clock
        self._session = Session(
            dsn_or_pool,
            schema=schema,
            min_pool_size=min_pool_size,
            max_pool_size=max_pool_size,
            connect_timeout=connect_timeout,
        )
        self._pool_sizes = (self._session.pool.min_size, self._session.pool.max_size)
        channel = f"timecrisis_{schema}"
        self._ctx = Context(Queries(schema), schema, channel)
        self._hub = WakeupHub()
        self._listener = NotificationListener(
            self._session.listen_connection, channel, self._hub.notify
        )
        self._subscribers = 0
        self._stopping: list[asyncio.Task[None]] = []
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgresJobStorage(schema={self.schema!r})"

    # ---- lifecycle ---------------------------------------------------------------------------

    async def init(self) -> None:
        await self._session.init()

    async def close(self) -> None:
        """Stop the listener and close the pool if the store created it. Idempotent."""
        self._closed = True
        self._hub.clear()
        await self._listener.stop()
        stopping, self._stopping = self._stopping, []
        await asyncio.gather(*stopping, return_exceptions=True)
        await self._session.close()

    async def now(self) -> datetime:
        if self._clock is not None:
            return self._clock.now()
        value = await self._session.read(
            "now", lambda conn: fetch_value(conn, self._q["db_now"], {"now": None})
        )
        assert isinstance(value, datetime)
        return utc(value)

    async def probe(self) -> int | None:
        """Connect once, outside the pool and without retrying, and return the schema's
        migration version, or None when the schema holds no timecrisis tables. Creates and
        migrates nothing. For tools that must fail at once on an unreachable server rather
        than wait out the pool's retries, and must not create a schema by looking into it
        (the CLI). Raises `StorageError`."""
        try:
            conn = await self._session.listen_connection()
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to PostgreSQL: {exc}") from exc
        try:
            async with conn:
                return await current_version(conn, self.schema)
        except psycopg.Error as exc:
            raise StorageError(f"PostgreSQL schema check failed: {exc}") from exc

    async def wait_for_listener(self) -> None:
        """Wait until the LISTEN connection is in place (for tests and health checks)."""
        await self._listener.listening.wait()

    # ---- plumbing ----------------------------------------------------------------------------

    @property
    def _q(self) -> Queries:
        return self._ctx.queries

    def _now(self) -> datetime | None:
        """The `now` parameter of every statement: None means the database's `now()`."""
        return None if self._clock is None else self._clock.now()

    def _wake_local(self) -> None:
        """Wake this process's listeners at once, without waiting for the NOTIFY to loop
        back (and even while the LISTEN connection is down)."""
        self._hub.notify()

    # ---- jobs --------------------------------------------------------------------------------

    async def insert_jobs(
        self, jobs_: Sequence[NewJob], *, connection: Any = None
    ) -> list[InsertResult]:
        if connection is not None and not isinstance(connection, AsyncConnection):
            connection = unwrap_connection(connection)  # a Django connection: its psycopg one
            if not isinstance(connection, psycopg.Connection):
                raise TypeError(
                    "connection= must be a psycopg Connection or AsyncConnection (your open "
                    f"transaction), or a Django connection; got {type(connection).__name__}"
                )
        batch = list(jobs_)
        if not batch:
            return []
        if isinstance(connection, psycopg.Connection):
            await self._session.init()  # the schema must exist before the caller's insert
            # Blocking I/O: off the loop, which other callers share (enqueue_sync's caller is
            # blocked meanwhile, so the connection is still used by one thread at a time).
            return await asyncio.to_thread(self.insert_jobs_sync, batch, connection=connection)
        if connection is not None:
            return await self._insert_in_callers_transaction(connection, batch)
        if jobs.may_conflict(batch):
            async with self._session.transaction("insert") as conn:
                results = await jobs.insert_jobs(conn, self._ctx, batch, self._now())
        else:  # one statement, atomic on its own: one round trip
            async with self._session.connection("insert") as conn:
                results = await jobs.insert_jobs(conn, self._ctx, batch, self._now())
        if any(r.created for r in results):
            self._wake_local()
        return results

    async def _insert_in_callers_transaction(
        self, connection: AsyncConnection[Any], batch: list[NewJob]
    ) -> list[InsertResult]:
        await self._session.init()
        try:
            # A savepoint inside the caller's transaction (a transaction of its own if there is
            # none): a failed insert leaves the caller's transaction usable, their rollback
            # undoes the jobs, and the NOTIFY is delivered only when they commit.
            if _would_open_a_transaction(connection):
                await connection.execute(_OPEN_TRANSACTION)
            async with connection.transaction():
                return await jobs.insert_jobs(connection, self._ctx, batch, self._now())
        except psycopg.Error as exc:
            raise StorageError(f"PostgreSQL insert failed: {exc}") from exc

    def insert_jobs_sync(
        self, jobs_: Sequence[NewJob], *, connection: psycopg.Connection[Any]
    ) -> list[InsertResult]:
        """`insert_jobs` in the caller's blocking transaction (`enqueue_sync(..., connection=)`),
        in the calling thread: a savepoint inside their transaction (a transaction of its own if
        there is none), as in the async case. The schema must exist (`init()` ran once)."""
        try:
            if _would_open_a_transaction(connection):
                connection.execute(_OPEN_TRANSACTION)
            with connection.transaction():
                return jobs.insert_jobs_sync(connection, self._ctx, list(jobs_), self._now())
        except psycopg.Error as exc:
            raise StorageError(f"PostgreSQL insert failed: {exc}") from exc

    def clone(self) -> PostgresJobStorage:
        """A new store on the same database, schema and clock, with a pool of its own (same
        connection settings and sizes; opened by its `init()`, closed by its `close()`).

        A pool belongs to the event loop that opened it; the sync twins (docs/sync.md) run on a
        loop of their own, so they use a clone rather than this store, whichever loop it is in
        use on. A pool you passed in is not shared: its `configure`/`reset` callbacks are not
        copied."""
        session = self._session
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            session.conninfo,
            kwargs=dict(session.kwargs),
            min_size=self._pool_sizes[0],
            max_size=self._pool_sizes[1],
            open=False,
            name=f"timecrisis-{self.schema}-sync",
        )
        twin = PostgresJobStorage(pool, schema=self.schema, clock=self._clock)
        twin._session.owns_pool = True  # so its init() waits for it and its close() closes it
        return twin

    async def cancel_job(self, job_id: str, *, terminate: bool = False) -> CancelOutcome:
        async with self._session.connection("cancel") as conn:
            return await jobs.cancel_job(conn, self._ctx, job_id, self._now(), terminate=terminate)

    async def retry_job(self, job_id: str) -> bool:
        async with self._session.connection("retry") as conn:
            retried = await jobs.retry_job(conn, self._ctx, job_id, self._now())
            if retried:  # after the retry committed: a separate statement is fine for a hint
                await conn.execute(self._q["notify"], {"channel": self._ctx.channel})
        if retried:
            self._wake_local()
        return retried

    async def purge_jobs(self, params: PurgeParams) -> int:
        async with self._session.connection("purge") as conn:
            return await jobs.purge_jobs(conn, self._ctx, params, self._now())

    async def get_job(self, job_id: str) -> Job | None:
        return await self._session.read(
            "get_job", lambda conn: jobs.get_job(conn, self._ctx, job_id)
        )

    async def list_jobs(self, query: JobQuery) -> list[Job]:
        return await self._session.read(
            "list_jobs", lambda conn: jobs.list_jobs(conn, self._ctx, query)
        )

    async def get_job_runs(self, job_id: str) -> list[JobRun]:
        return await self._session.read(
            "get_job_runs", lambda conn: coord.get_job_runs(conn, self._ctx, job_id)
        )

    async def get_job_logs(self, job_id: str) -> list[JobLog]:
        return await self._session.read(
            "get_job_logs", lambda conn: coord.get_job_logs(conn, self._ctx, job_id)
        )

    async def get_metrics(self) -> Metrics:
        return await self._session.read(
            "get_metrics", lambda conn: coord.get_metrics(conn, self._ctx)
        )

    async def get_run_stats(self) -> list[RunStats]:
        return await self._session.read(
            "get_run_stats", lambda conn: stats.get_run_stats(conn, self._ctx)
        )

    async def count_finished_jobs(self, since: datetime, bucket: timedelta) -> list[FinishedCount]:
        return await self._session.read(
            "count_finished_jobs",
            lambda conn: stats.count_finished_jobs(conn, self._ctx, since, bucket),
        )

    # ---- claims ------------------------------------------------------------------------------

    async def claim_jobs(self, params: ClaimParams) -> list[ClaimedJob]:
        if params.limit <= 0 or not params.type_limits:
            return []
        async with self._session.claim_connection("claim") as conn:
            if not claims.needs_type_locks(params):  # one statement: atomic on its own
                return await claims.read_claims(
                    await claims.send_claim(conn, self._ctx, params, self._now())
                )
            async with conn.pipeline(), conn.transaction():
                cursor = await claims.send_claim(conn, self._ctx, params, self._now())
            return await claims.read_claims(cursor)  # committed: one round trip in all

    async def complete_and_claim(
        self, completions: Sequence[Completion], params: ClaimParams
    ) -> tuple[list[datetime | None], list[ClaimedJob]]:
        """`complete_jobs(completions)`, then `claim_jobs(params)`, in ONE statement (no
        per-type limit involved) or one pipelined transaction (the limited claim needs its
        lock statement first): one round trip and one commit (one WAL flush) for both, where
        two separate calls pay two. A worker's completions and its next claim are due at the
        same moment (the finished jobs freed the slots), and with `synchronous_commit` on, the
        WAL flush is a large part of a call's time (docs/performance.md). The claim sees the
        completions, so a limited type's freed slots are claimable at once. All or nothing:
        on error neither happened."""
        if not completions:
            return [], await self.claim_jobs(params)
        if params.limit <= 0 or not params.type_limits:
            return await self.complete_jobs(completions), []
        now = self._now()
        async with self._session.claim_connection("complete_and_claim") as conn:
            if not claims.needs_type_locks(params):
                return await claims.complete_and_claim_unlimited(
                    conn, self._ctx, list(completions), params, now
                )
            async with conn.pipeline(), conn.transaction():
                done = await claims.send_complete(conn, self._ctx, completions, now)
                claimed = await claims.send_claim(conn, self._ctx, params, now)
            return await claims.read_complete(done, completions), await claims.read_claims(claimed)

    async def renew_claims(self, refs: Sequence[ClaimRef], lease_ttl: timedelta) -> RenewResult:
        if not refs:
            return RenewResult(frozenset(), frozenset())
        async with self._session.connection("renew") as conn:
            return await claims.renew_claims(conn, self._ctx, list(refs), lease_ttl, self._now())

    async def complete_jobs(self, completions: Sequence[Completion]) -> list[datetime | None]:
        if not completions:
            return []
        async with self._session.connection("complete") as conn:
            return await claims.complete_jobs(conn, self._ctx, list(completions), self._now())

    async def fail_job(self, failure: Failure) -> FailOutcome | None:
        async with self._session.transaction("fail") as conn:
            outcome = await claims.fail_job(conn, self._ctx, failure, self._now())
            if outcome is not None and outcome.will_retry:
                await conn.execute(self._q["notify"], {"channel": self._ctx.channel})
        if outcome is not None and outcome.will_retry:
            self._wake_local()
        return outcome

    async def release_jobs(self, refs: Sequence[ClaimRef]) -> list[bool]:
        if not refs:
            return []
        async with self._session.connection("release") as conn:
            results = await claims.release_jobs(conn, self._ctx, list(refs), self._now())
        if any(results):
            self._wake_local()
        return results

    async def snooze_job(self, ref: ClaimRef, delay: timedelta) -> Job | None:
        async with self._session.connection("snooze") as conn:
            job = await claims.snooze_job(conn, self._ctx, ref, delay, self._now())
        if job is not None and job.status is JobStatus.PENDING and delay <= timedelta(0):
            self._wake_local()
        return job

    async def update_progress(self, ref: ClaimRef, percent: float) -> bool:
        async with self._session.connection("update_progress") as conn:
            return await claims.update_progress(conn, self._ctx, ref, percent)

    async def append_logs(self, entries: Sequence[NewLogEntry]) -> None:
        if entries:
            async with self._session.connection("append_logs") as conn:
                await coord.append_logs(conn, self._ctx, list(entries), self._now())

    # ---- maintenance -------------------------------------------------------------------------

    async def recover_expired_leases(self, limit: int = 100) -> list[FailOutcome]:
        async with self._session.transaction("recover_expired_leases") as conn:
            outcomes = await claims.recover_expired_leases(conn, self._ctx, limit, self._now())
            if any(o.will_retry for o in outcomes):
                await conn.execute(self._q["notify"], {"channel": self._ctx.channel})
        if any(o.will_retry for o in outcomes):
            self._wake_local()
        return outcomes

    async def expire_jobs(self, limit: int = 100) -> list[Job]:
        async with self._session.transaction("expire_jobs") as conn:
            return await claims.expire_jobs(conn, self._ctx, limit, self._now())

    # ---- locks -------------------------------------------------------------------------------

    async def acquire_lock(self, name: str, owner: str, ttl: timedelta) -> str | None:
        async with self._session.connection("acquire_lock") as conn:
            return await coord.acquire_lock(conn, self._ctx, name, owner, ttl, self._now())

    async def renew_lock(self, name: str, token: str, ttl: timedelta) -> bool:
        async with self._session.connection("renew_lock") as conn:
            return await coord.renew_lock(conn, self._ctx, name, token, ttl, self._now())

    async def release_lock(self, name: str, token: str) -> bool:
        async with self._session.connection("release_lock") as conn:
            return await coord.release_lock(conn, self._ctx, name, token)

    async def get_lock(self, name: str) -> LockInfo | None:
        return await self._session.read(
            "get_lock", lambda conn: coord.get_lock(conn, self._ctx, name, self._now())
        )

    # ---- workers -----------------------------------------------------------------------------

    async def heartbeat_worker(
        self, name: str, *, running: int, is_leader: bool, ttl: timedelta = DEFAULT_WORKER_TTL
    ) -> None:
        async with self._session.connection("heartbeat_worker") as conn:
            await coord.heartbeat_worker(
                conn, self._ctx, name, running, is_leader, ttl, self._now()
            )

    async def remove_worker(self, name: str) -> None:
        async with self._session.connection("remove_worker") as conn:
            await coord.remove_worker(conn, self._ctx, name)

    async def list_workers(self) -> list[WorkerInfo]:
        return await self._session.read(
            "list_workers", lambda conn: coord.list_workers(conn, self._ctx)
        )

    async def prune_workers(self) -> list[str]:
        async with self._session.connection("prune_workers") as conn:
            return await coord.prune_workers(conn, self._ctx, self._now())

    # ---- schedules ---------------------------------------------------------------------------

    async def upsert_schedule(self, spec: ScheduleSpec) -> ScheduledJob:
        async with self._session.transaction("upsert_schedule") as conn:
            return await coord.upsert_schedule(conn, self._ctx, spec, self._now())

    async def get_schedule(self, name: str) -> ScheduledJob | None:
        return await self._session.read(
            "get_schedule", lambda conn: coord.get_schedule(conn, self._ctx, name)
        )

    async def list_schedules(self) -> list[ScheduledJob]:
        return await self._session.read(
            "list_schedules", lambda conn: coord.list_schedules(conn, self._ctx)
        )

    async def set_schedule_enabled(self, name: str, enabled: bool) -> bool:
        async with self._session.connection("set_schedule_enabled") as conn:
            return await coord.set_schedule_enabled(conn, self._ctx, name, enabled, self._now())

    async def delete_schedule(self, name: str) -> bool:
        async with self._session.connection("delete_schedule") as conn:
            return await coord.delete_schedule(conn, self._ctx, name)

    async def get_due_schedules(self, limit: int = 100) -> DueSchedules:
        return await self._session.read(
            "get_due_schedules",
            lambda conn: coord.get_due_schedules(conn, self._ctx, limit, self._now()),
        )

    async def advance_schedule(self, advance: ScheduleAdvance) -> AdvanceResult:
        async with self._session.transaction("advance_schedule") as conn:
            result = await coord.advance_schedule(conn, self._ctx, advance, self._now())
        if result.job_id is not None:
            self._wake_local()
        return result

    # ---- wake-ups ----------------------------------------------------------------------------

    def add_wakeup_listener(self, callback: WakeupCallback) -> Callable[[], None]:
        """Call `callback` on the subscriber's loop when any node inserts, releases or retries
        a job. The first subscriber starts the store's LISTEN connection; the last one to leave
        stops it."""
        unsubscribe_from_hub = self._hub.subscribe(callback)
        self._subscribers += 1
        if not self._closed:
            self._listener.start()
        subscribed = True

        def unsubscribe() -> None:
            nonlocal subscribed
            if not subscribed:
                return
            subscribed = False
            unsubscribe_from_hub()
            self._subscribers -= 1
            if self._subscribers == 0:
                task = self._listener.cancel()
                if task is not None:
                    self._stopping.append(task)  # close() waits for its connection to close
                    task.add_done_callback(self._forget_stopped)

        return unsubscribe

    def _forget_stopped(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(ValueError):
            self._stopping.remove(task)
