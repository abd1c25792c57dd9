"""The benchmark's PostgreSQL helpers: create its database, measure the server's commit latency."""

from __future__ import annotations

import contextlib
import statistics
import time

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

_checked: set[str] = set()


async def ensure_database(url: str) -> None:
    """Create the database named in `url` (through the server's `postgres` database)."""
    if url in _checked:
        return
    try:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
        name = str(conninfo_to_dict(url).get("dbname") or "")
        if not name:
            raise
        admin = make_conninfo(url, dbname="postgres")
        async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
            # another run may have created it meanwhile
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    else:
        await conn.close()
    _checked.add(url)


def commit_latency_ms(url: str, commits: int = 200) -> float:
    """Median time of one autocommitted one-row INSERT on this server: the WAL flush that every
    durable commit waits for. The benchmark records it before and after the run, because on
    a shared machine it moves, and every PostgreSQL number moves with it."""
    samples = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS tcbench_commit_probe (x int)")  # not TEMP:
        # a temporary table is never WAL-logged, so its commits would not wait for a flush
        for _ in range(commits):
            started = time.perf_counter()
            conn.execute("INSERT INTO tcbench_commit_probe VALUES (1)")
            samples.append((time.perf_counter() - started) * 1000)
        conn.execute("DROP TABLE tcbench_commit_probe")
    return statistics.median(samples)
