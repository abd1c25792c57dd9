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
- `_backend.py` is the engine behind the shared facade (`storage/_facade.py`, which owns the
  in-process wake-up rules and the trivial inputs); this class builds it and adds what only
  PostgreSQL has (`probe`, `clone`, `insert_jobs_sync`, `wait_for_listener`).
- Every psycopg error surfaces as `StorageError` (the driver's exception as `__cause__`). After
  a connection-level error the pool is checked and dead connections are replaced, so a restarted
  server or a `pg_terminate_backend` costs the calls in flight, not the worker. Reads are retried
  once on a fresh connection; writes are not (the caller cannot know whether they committed,
  and every write here is safe to retry at the caller's level: fenced or idempotent).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from timecrisis.clock import Clock
from timecrisis.errors import StorageError
from timecrisis.storage._facade import Store
from timecrisis.storage._wakeups import WakeupHub
from timecrisis.storage.base import InsertResult, NewJob, StoreCapabilities
from timecrisis.storage.postgres._backend import Listening, PostgresBackend
from timecrisis.storage.postgres._db import Context
from timecrisis.storage.postgres._migrate import current_version
from timecrisis.storage.postgres._session import Session
from timecrisis.storage.postgres.listener import NotificationListener

# Lowercase, so the name means the same quoted or not in hand-written SQL; at most 50
# characters, so the NOTIFY channel derived from it fits PostgreSQL's 63-byte names.
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,49}$")

CAPABILITIES = StoreCapabilities(
    complete_and_claim=True,
    transactional_insert=True,
    cross_process_wakeups=True,
    streamed_insert=True,
)


class InvalidSchemaNameError(StorageError, ValueError):
    """The schema name is not a plain lowercase identifier."""


class PostgresJobStorage(Store[PostgresBackend]):
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
        session = Session(
            dsn_or_pool,
            schema=schema,
            min_pool_size=min_pool_size,
            max_pool_size=max_pool_size,
            connect_timeout=connect_timeout,
        )
        self._pool_sizes = (session.pool.min_size, session.pool.max_size)
        hub = WakeupHub()
        listening = Listening(
            NotificationListener(session.listen_connection, f"timecrisis_{schema}", hub.notify)
        )
        backend = PostgresBackend(session, schema, clock, listening)
        super().__init__(
            backend,
            capabilities=CAPABILITIES,
            combined=backend,
            transactional=backend,
            streamed=backend,
            remote=listening,
            hub=hub,
        )

    def __repr__(self) -> str:
        return f"PostgresJobStorage(schema={self.schema!r})"

    # The engine's parts, for tests and tools that look inside.

    @property
    def _session(self) -> Session:
        return self._backend.session

    @property
    def _ctx(self) -> Context:
        return self._backend.ctx

    @property
    def _listener(self) -> NotificationListener:
        assert self._backend.listening is not None
        return self._backend.listening.listener

    # ---- what only PostgreSQL has ------------------------------------------------------------

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

    def insert_jobs_sync(
        self, jobs_: Sequence[NewJob], *, connection: psycopg.Connection[Any]
    ) -> list[InsertResult]:
        """`insert_jobs` in the caller's blocking transaction (`enqueue_sync(..., connection=)`),
        in the calling thread: a savepoint inside their transaction (a transaction of its own if
        there is none), as in the async case. The schema must exist (`init()` ran once)."""
        return self._backend.insert_jobs_sync(jobs_, connection)

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
        twin = PostgresJobStorage(pool, schema=self.schema, clock=self._backend.clock)
        twin._session.owns_pool = True  # so its init() waits for it and its close() closes it
        return twin
