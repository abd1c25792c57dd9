"""W5: W2 on a store that already holds a long history of completed jobs (1,000,000 in the
full run): the claim must cost the same with history as without.

The history is made once, directly in SQL inside the store (`INSERT ... SELECT` over a
generated series: seconds, where enqueueing would take minutes), then (PostgreSQL) analyzed
as autovacuum would (the SQLite store names its indexes and needs no statistics), and kept for
later runs: PostgreSQL schema `tcbench_history_<size>`, SQLite file
`benchmarks/results/cache/w5-history-<size>.db`, each with a `bench_history` row recording the last
history seq. Every run first deletes what the previous run added above that seq.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.app import NOOP
from benchmarks.config import CACHE, POSTGRES_URL, Counts
from benchmarks.pg import ensure_database
from benchmarks.systems import Postgres, SQLite, System
from benchmarks.w2_drain import drain
from timecrisis import SQLiteJobStorage
from timecrisis.storage.postgres import PostgresJobStorage


def _pg_schema(size: int) -> str:
    return f"tcbench_history_{size}"  # one per size: quick and full runs keep their own


def _sqlite_path(size: int) -> Path:
    return CACHE / f"w5-history-{size}.db"


def history_system(name: str, size: int) -> System:
    if name == "postgres":
        return Postgres(_pg_schema(size), history=True)
    if name == "sqlite":
        return SQLite(_sqlite_path(size), history=True)
    raise ValueError(f"W5 runs on postgres and sqlite, not {name}")


async def prepare(name: str, counts: Counts) -> dict[str, Any]:
    """Make the history if it is missing or of another size; returns how long that took."""
    started = time.perf_counter()
    made = await (_prepare_pg if name == "postgres" else _prepare_sqlite)(counts.w5_history)
    return {"history": counts.w5_history, "made": made, "seconds": time.perf_counter() - started}


async def _prepare_pg(size: int) -> bool:
    await ensure_database(POSTGRES_URL)
    schema = _pg_schema(size)
    s = f'"{schema}"'
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.bench_history",))
        row = await cur.fetchone()
        if row and row[0]:
            cur = await conn.execute(f"SELECT history FROM {s}.bench_history")
            row = await cur.fetchone()
            if row and row[0] == size:
                return False
        await conn.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")
    store = PostgresJobStorage(POSTGRES_URL, schema=schema)
    await store.init()  # the real schema, through the real migrations
    await store.close()
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        async with conn.transaction():
            await conn.execute(
                f"INSERT INTO {s}.jobs (id, type, data, status, priority, max_retries, attempts,"
                " backoff_strategy, retry_delay, max_retry_delay, run_at, created_at, started_at,"
                " finished_at, progress, worker)"
                " SELECT gen_random_uuid()::text, %s, '{}', 'completed', 1, 0, 1, 'exponential',"
                " 10, 86400, t, t, t, t + interval '1 ms', 100, 'history'"
                " FROM generate_series(1, %s) AS g,"
                " LATERAL (SELECT now() - interval '2 days' + g * interval '100 ms' AS t) AS x",
                (NOOP, size),
            )
            await conn.execute(
                f"INSERT INTO {s}.job_runs (id, job_id, job_type, attempt, status, worker,"
                " started_at, finished_at, duration, progress)"
                " SELECT gen_random_uuid()::text, id, type, 1, 'completed', 'history',"
                f" started_at, finished_at, 0.001, 100 FROM {s}.jobs ORDER BY seq"
            )
            await conn.execute(f"CREATE TABLE {s}.bench_history (value bigint, history bigint)")
            await conn.execute(
                f"INSERT INTO {s}.bench_history SELECT max(seq), %s FROM {s}.jobs", (size,)
            )
        await conn.execute(f"VACUUM ANALYZE {s}.jobs")
        await conn.execute(f"VACUUM ANALYZE {s}.job_runs")
    return True


def _sqlite_history_size(path: Path) -> int | None:
    if not path.exists():
        return None
    with (
        contextlib.closing(sqlite3.connect(path)) as conn,
        contextlib.suppress(sqlite3.Error),
    ):
        row = conn.execute("SELECT history FROM bench_history").fetchone()
        return int(row[0]) if row else None
    return None


def _remove_sqlite_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)


async def _prepare_sqlite(size: int) -> bool:
    path = _sqlite_path(size)
    if _sqlite_history_size(path) == size:
        return False
    _remove_sqlite_files(path)
    store = SQLiteJobStorage(path)
    await store.init()
    await store.close()
    start_us = int((datetime.now(UTC).timestamp() - 2 * 86400) * 1_000_000)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?) "
            "INSERT INTO jobs (id, type, data, status, priority, max_retries, attempts, "
            "backoff_strategy, retry_delay, max_retry_delay, run_at, created_at, started_at, "
            "finished_at, progress, worker) "
            "SELECT lower(hex(randomblob(16))), ?, '{}', 'completed', 1, 0, 1, 'exponential', "
            "10, 86400, ? + n * 100000, ? + n * 100000, ? + n * 100000, ? + n * 100000 + 1000, "
            "100, 'history' FROM g",
            (size, NOOP, start_us, start_us, start_us, start_us),
        )
        conn.execute(
            "INSERT INTO job_runs (id, job_id, job_type, attempt, status, worker, started_at, "
            "finished_at, duration, progress) "
            "SELECT lower(hex(randomblob(16))), id, type, 1, 'completed', 'history', "
            "started_at, finished_at, 0.001, 100 FROM jobs ORDER BY seq"
        )
        conn.execute("CREATE TABLE bench_history (value INTEGER, history INTEGER)")
        conn.execute("INSERT INTO bench_history SELECT max(seq), ? FROM jobs", (size,))
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return True


async def run(system: System, counts: Counts, workdir: Path, timeout: float) -> dict[str, Any]:
    return await drain(
        system, jobs=counts.w2_jobs, workers=1, fork=False, timeout=timeout, workdir=workdir
    )
