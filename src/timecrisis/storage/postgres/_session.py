"""The store's way to the database: the pool, first-use initialisation, error mapping, and
recovery from lost connections.

- Every psycopg error leaves here as `StorageError`, the driver's exception kept as `__cause__`.
- After a connection-level error (server restart, `pg_terminate_backend`, a dropped network
  link) the pool's idle connections are tested and the dead ones replaced, so the next call gets
  a live connection. Without this, each dead idle connection would fail one more call.
- Reads are retried once on a fresh connection after such an error. Writes are not: whether a
  write committed before its connection died is unknown here, and every write of this store is
  safe for its caller to retry (fenced by a token, keyed, or idempotent).
- Claims have connections of their own (`claim_connection`), which plan each statement once:
  see `_ClaimPool`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.array import ListBinaryDumper
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from timecrisis.errors import StorageError
from timecrisis.storage.postgres._db import Conn, pipelined_transaction
from timecrisis.storage.postgres._migrate import migrate

T = TypeVar("T")
logger = logging.getLogger("timecrisis.storage.postgres")

_CONNECT_TIMEOUT = 10  # seconds, unless the DSN says otherwise: a dead host must not hang


class Session:
    """The pool (created from a DSN, or the caller's own) and everything around using it."""

    def __init__(
        self,
        dsn_or_pool: str | AsyncConnectionPool[Any],
        *,
        schema: str,
        min_pool_size: int,
        max_pool_size: int,
        connect_timeout: float | None = None,
    ) -> None:
        self._schema = schema
        self.pool: AsyncConnectionPool[Any]
        if isinstance(dsn_or_pool, AsyncConnectionPool):
            if not isinstance(dsn_or_pool.conninfo, str):
                raise TypeError("a pool whose conninfo is computed per connection is not supported")
            if callable(dsn_or_pool.kwargs):
                raise TypeError("a pool whose kwargs are computed per connection is not supported")
            self.pool = dsn_or_pool
            self.owns_pool = False
            self._conninfo, self._kwargs = dsn_or_pool.conninfo, dict(dsn_or_pool.kwargs or {})
        elif isinstance(dsn_or_pool, str) and dsn_or_pool.strip():
            self._conninfo, self._kwargs = dsn_or_pool, _own_pool_kwargs(dsn_or_pool)
            if connect_timeout is not None:
                self._kwargs["connect_timeout"] = _timeout_seconds(connect_timeout)
            self.pool = AsyncConnectionPool(
                dsn_or_pool,
                min_size=min_pool_size,
                max_size=max_pool_size,
                kwargs=self._kwargs,
                open=False,
                name=f"timecrisis-{schema}",
            )
            self.owns_pool = True
        else:
            raise TypeError(
                f"PostgresJobStorage needs a DSN or an AsyncConnectionPool, got {dsn_or_pool!r}"
            )
        self._ready = False
        self._closed = False
        self._init_lock = asyncio.Lock()
        self._healing = False
        self._claims = _ClaimPool(self._conninfo, self._kwargs, schema)

    @property
    def conninfo(self) -> str:
        return self._conninfo

    @property
    def kwargs(self) -> dict[str, Any]:
        """The options every pooled connection is opened with."""
        return self._kwargs

    # ---- lifecycle ---------------------------------------------------------------------------

    async def init(self) -> None:
        """Open the pool (a pool the store owns waits for its first connections) and bring the
        schema up to date. Once per store; concurrent callers share one initialisation."""
        if self._ready:
            return
        async with self._init_lock:
            await self._init_once()

    async def _init_once(self) -> None:
        if self._ready:  # another task initialised the store while this one waited
            return
        if self._closed:
            raise StorageError("this PostgreSQL store is closed")
        try:
            if self.owns_pool:
                # One direct connection first: an unreachable server fails within
                # connect_timeout with libpq's reason ("Connection refused"), where the pool
                # would retry in the background for 30 s and report only its own timeout.
                async with await AsyncConnection.connect(self._conninfo, **self._kwargs) as conn:
                    await migrate(conn, self._schema)
                await self.pool.open(wait=True)
            else:
                await self.pool.open(wait=False)
                async with self.pool.connection() as conn:
                    await migrate(conn, self._schema)
        except psycopg.Error as exc:
            raise StorageError(f"PostgreSQL initialisation failed: {exc}") from exc
        self._ready = True

    async def close(self) -> None:
        self._closed = True
        await self._claims.close()
        if self.owns_pool:
            await self.pool.close()

    async def listen_connection(self) -> AsyncConnection[Any]:
        """A connection outside the pool, with the pool's settings, for LISTEN."""
        options = _side_connection_options(self._conninfo, self._kwargs)
        return await AsyncConnection.connect(self._conninfo, autocommit=True, **options)

    # ---- using connections -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def connection(self, what: str) -> AsyncIterator[Conn]:
        """A pooled connection; psycopg errors in the block become `StorageError`."""
        await self.init()
        async with self._storage_errors(what), self.pool.connection() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def claim_connection(self, what: str) -> AsyncIterator[Conn]:
        """A connection of the claim pool (see `_ClaimPool`), for the statements of
        `claim_jobs` and `complete_and_claim` only; errors as in `connection`."""
        await self.init()
        async with self._storage_errors(what), self._claims.connection() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def _storage_errors(self, what: str) -> AsyncIterator[None]:
        """psycopg errors in the block become `StorageError`; after a connection-level one the
        pools are checked first."""
        try:
            yield
        except psycopg.Error as exc:
            if _is_connection_problem(exc):
                await self._heal()
            raise StorageError(f"PostgreSQL {what} failed: {exc}") from exc

    @contextlib.asynccontextmanager
    async def transaction(self, what: str) -> AsyncIterator[Conn]:
        """A pipelined transaction (`pipelined_transaction`) on a pooled connection."""
        async with self.connection(what) as conn, pipelined_transaction(conn):
            yield conn

    async def read(self, what: str, op: Callable[[Conn], Awaitable[T]]) -> T:
        """Run an idempotent read, retried once on a fresh connection after a
        connection-level error."""
        await self.init()
        for attempt in (1, 2):
            try:
                async with self.pool.connection() as conn:
                    return await op(conn)
            except psycopg.Error as exc:
                if not _is_connection_problem(exc):
                    raise StorageError(f"PostgreSQL {what} failed: {exc}") from exc
                await self._heal()
                if attempt == 2:
                    raise StorageError(f"PostgreSQL {what} failed: {exc}") from exc
                logger.info(
                    "PostgreSQL %s lost its connection (%s); retrying once",
                    what,
                    exc,
                    extra={"action": "storage_retry"},
                )
        raise AssertionError("unreachable")

    async def _heal(self) -> None:
        """Test the idle pool connections and replace the dead ones. One check at a time:
        concurrent failures share it."""
        if self._healing or self.pool.closed:
            return
        self._healing = True
        try:
            logger.warning(
                "PostgreSQL connection lost; checking the pool's connections",
                extra={"action": "storage_connection_lost"},
            )
            await self.pool.check()
            await self._claims.check()
        except psycopg.Error as exc:  # the server may still be down; the pool keeps trying
            logger.warning("PostgreSQL pool check failed: %s", exc)
        finally:
            self._healing = False


class _ClaimPool:
    """Connections that plan the claim statements once, not on every call.

    A claim and a completion batch are the same few statements, run a thousand times a second
    by a busy worker. PostgreSQL's default (`plan_cache_mode = auto`) keeps planning them anew
    (custom plans): their generic plans' estimated costs are higher, since a parameter `LIMIT`
    is estimated at a tenth of the table. Planning cost about 1 ms of a 5 ms
    `complete_and_claim` and half a millisecond of an idle worker's claim (docs/performance.md).
    These connections use `plan_cache_mode = force_generic_plan`: each statement is planned at
    its first execution and the plan is reused. queries.sql writes the claim statements so that
    their generic plans are the custom ones (rows are found by the tuple ids a claim locked, or
    through the id index, `id = ANY(ARRAY(...))`, never by a join the planner could turn into a
    scan of `jobs`), and tests/postgres/test_generic_plans.py checks that on a large table, with
    and without statistics.

    Only claims use these connections: a setting per session cannot be scoped to one statement,
    and every other statement here keeps its custom plans. Opened at the first claim (a process
    that only enqueues never opens it), closed with the store; at most two connections (a
    worker claims from one loop, one claim at a time)."""

    def __init__(self, conninfo: str, kwargs: dict[str, Any], schema: str) -> None:
        self._pool = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=2,
            kwargs={**_side_connection_options(conninfo, kwargs), "autocommit": True},
            configure=_configure_claims,
            open=False,
            name=f"timecrisis-{schema}-claims",
        )
        self._opened = False

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        if not self._opened:
            self._opened = True
            await self._pool.open(wait=False)
        async with self._pool.connection() as conn:
            yield conn

    async def check(self) -> None:
        if self._opened and not self._pool.closed:
            await self._pool.check()

    async def close(self) -> None:
        if self._opened:
            await self._pool.close()


async def _configure_claims(conn: Conn) -> None:
    """A claim connection: its statements planned once (see `_ClaimPool`), its arrays sent in
    binary."""
    # Every parameter of a claim or a completion batch that is a list (ids, tokens, run ids,
    # results, flags) goes in binary, each element its length and bytes: psycopg's text form
    # quotes and escapes every element in Python (a regular expression each), which cost a
    # busy worker about 3 us a job, 6 % of its CPU (docs/performance.md). Same values, same
    # `::type[]` casts in queries.sql; only these connections' lists are affected.
    conn.adapters.register_dumper(list, ListBinaryDumper)
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    # A generic plan's costs assume a tenth of the queue (see above), and flow control's
    # per-candidate key checks multiply them: past `jit_above_cost` every execution compiled
    # the claim (3 s per claim with keyed jobs in a 100,000-job backlog). A claim touches a few
    # index entries per job; JIT never pays for itself here.
    await conn.execute("SET jit = off")


def _side_connection_options(conninfo: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The pool's connection options for a connection the store opens beside it (LISTEN,
    claims): always autocommit, rows read by name, a connect timeout unless the DSN has one."""
    options = {k: v for k, v in kwargs.items() if k not in ("autocommit", "row_factory")}
    if "connect_timeout" not in conninfo_to_dict(conninfo):
        options.setdefault("connect_timeout", _CONNECT_TIMEOUT)
    return options


def _timeout_seconds(value: float) -> int:
    """libpq's connect_timeout is whole seconds (and treats 1 as 2): round up, at least 1."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"connect_timeout must be a positive number of seconds, got {value!r}")
    return max(1, math.ceil(value))


def _is_connection_problem(exc: psycopg.Error) -> bool:
    """Errors after which the connection or the server is suspect, so a fresh connection may
    succeed. A pool timeout is not one: retrying would only wait as long again."""
    return isinstance(exc, psycopg.OperationalError) and not isinstance(
        exc, PoolTimeout | PoolClosed
    )


def _own_pool_kwargs(dsn: str) -> dict[str, Any]:
    """Connection options of a pool the store creates: autocommit, so a one-statement call is
    one round trip (transactions are explicit); a recognisable application name for operators
    (pg_stat_activity), unless the DSN sets one; a connect timeout, unless the DSN sets one."""
    try:
        given = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise StorageError(f"invalid PostgreSQL DSN: {exc}") from exc
    kwargs: dict[str, Any] = {"autocommit": True}
    if "application_name" not in given:
        kwargs["application_name"] = "timecrisis"
    if "connect_timeout" not in given:
        kwargs["connect_timeout"] = _CONNECT_TIMEOUT
    return kwargs
