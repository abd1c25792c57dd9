"""Small helpers the statement modules share: the connection type, the per-store context, and
row fetching by column name (independent of the row factory a caller's pool configured)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import DictRow, dict_row

from timecrisis.storage.postgres._sql import Queries

Conn = AsyncConnection[Any]
Params = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Context:
    """What every statement needs besides its arguments."""

    queries: Queries
    schema: str
    channel: str  # NOTIFY channel of this schema


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
