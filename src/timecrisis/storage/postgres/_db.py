"""Small helpers the statement modules share: the connection type, the per-store context, and
row fetching by column name (independent of the row factory a caller's pool configured)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, AsyncCursor, pq
from psycopg.rows import DictRow, dict_row

from timecrisis.storage.postgres._sql import Queries

Conn = AsyncConnection[Any]
logger = logging.getLogger("timecrisis.storage.postgres")
Params = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Context:
    """What every statement needs besides its arguments."""

    queries: Queries
    schema: str
    channel: str  # NOTIFY channel of this schema


@contextlib.asynccontextmanager
async def pipelined_transaction(conn: Conn) -> AsyncIterator[Conn]:
    """A transaction in pipeline mode: its statements go out without waiting for each other;
    only a read or the COMMIT waits for the server.

    A connection that a cancellation left in pipeline mode is closed here, so that no pool
    hands it out again. psycopg (3.3.9) cannot leave pipeline mode when the task is cancelled
    while the pipeline ends ("cannot exit pipeline mode with uncollected results"), and then
    forgets the pipeline while libpq keeps it. Every later statement on that connection, in
    autocommit or not, joins one implicit transaction that no Sync ever ends: its writes are
    acknowledged, seen by that connection alone, and rolled back when the connection closes.
    A stop, a leader stepping down or any timeout around a store call cancels such tasks
    (tests/postgres/test_cancelled_calls.py)."""
    try:
        async with conn.pipeline(), conn.transaction():
            yield conn
    except BaseException:
        if conn.pgconn.pipeline_status != pq.PipelineStatus.OFF:
            # Says why psycopg's pool then logs "discarding closed connection".
            logger.info(
                "closing a PostgreSQL connection that an interrupted transaction left in "
                "pipeline mode; the pool opens a new one",
                extra={"action": "storage_connection_closed"},
            )
            await conn.close()
        raise


async def start(
    conn: Conn,
    query: bytes,
    params: Params,
    *,
    prepare: bool | None = None,
    binary: bool | None = None,
) -> AsyncCursor[DictRow]:
    """Send a statement and return its cursor unread: in pipeline mode the results arrive at
    the next sync, so a caller can queue several statements and read them all after one round
    trip."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(query, params, prepare=prepare, binary=binary)
    return cur


async def fetch_all(
    conn: Conn,
    query: bytes,
    params: Params,
    *,
    prepare: bool | None = None,
    binary: bool | None = None,
) -> list[DictRow]:
    cur = await start(conn, query, params, prepare=prepare, binary=binary)
    return await cur.fetchall()


async def fetch_one(conn: Conn, query: bytes, params: Params) -> DictRow | None:
    cur = await start(conn, query, params)
    return await cur.fetchone()


async def fetch_value(conn: Conn, query: bytes, params: Params) -> Any:
    row = await fetch_one(conn, query, params)
    if row is None:
        raise AssertionError("a single-row statement returned no row")
    return next(iter(row.values()))
