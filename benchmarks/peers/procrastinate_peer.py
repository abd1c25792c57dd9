"""Procrastinate on the benchmark's PostgreSQL database (its tables in `public`).

Worker: `app.run_worker_async(concurrency=10)` with its defaults (LISTEN/NOTIFY on, 5 s
polling fallback). Enqueue: `defer_async` one at a time, `batch_defer_async` for a batch."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import procrastinate
import psycopg

from benchmarks.config import CONCURRENCY, POSTGRES_URL
from benchmarks.handlers import write_stamp
from benchmarks.pg import ensure_database
from benchmarks.systems import python_env

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=POSTGRES_URL))


@app.task(name="noop")
async def noop() -> None:
    return None


@app.task(name="stamp")
async def stamp(n: int) -> None:
    write_stamp(n)


class Procrastinate:
    name = "procrastinate"
    in_process = False

    def __init__(self) -> None:
        self._open = False
        self._reader: psycopg.AsyncConnection[Any] | None = None

    async def _app(self) -> procrastinate.App:
        if not self._open:
            await app.open_async()
            self._open = True
        return app

    async def reset(self) -> None:
        await ensure_database(POSTGRES_URL)
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
            cur = await conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
            row = await cur.fetchone()
            exists = bool(row and row[0])
        if not exists:
            await (await self._app()).schema_manager.apply_schema_async()
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
            await conn.execute(
                "TRUNCATE procrastinate_jobs, procrastinate_events, procrastinate_periodic_defers,"
                " procrastinate_workers RESTART IDENTITY CASCADE"
            )

    async def enqueue_one(self, job_type: str, payload: dict[str, Any]) -> None:
        await (await self._app()).tasks[job_type].defer_async(**payload)

    async def enqueue_many(self, job_type: str, payloads: list[dict[str, Any]]) -> None:
        await (await self._app()).tasks[job_type].batch_defer_async(*payloads)

    def worker_command(self, fork: bool) -> list[str]:
        return [sys.executable, "-m", "benchmarks.peers.procrastinate_peer", "worker"]

    def worker_env(self) -> dict[str, str]:
        return python_env()

    async def _read(self) -> psycopg.AsyncConnection[Any]:
        if self._reader is None:
            self._reader = await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True)
        return self._reader

    async def settle(self) -> None:
        await (await self._read()).execute("ANALYZE procrastinate_jobs")

    async def outstanding(self) -> bool:
        cur = await (await self._read()).execute(
            "SELECT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE status IN ('todo', 'doing'))"
        )
        row = await cur.fetchone()
        return bool(row and row[0])

    async def finished(self) -> int:
        cur = await (await self._read()).execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def discard(self) -> None:
        return None  # its tables live in `public`; the next reset truncates them

    async def close(self) -> None:
        if self._open:
            await app.close_async()
            self._open = False
        if self._reader is not None:
            await self._reader.close()
            self._reader = None


async def _work() -> None:
    async with app.open_async():
        await app.run_worker_async(concurrency=CONCURRENCY, wait=True)


if __name__ == "__main__" and sys.argv[1:] == ["worker"]:
    asyncio.run(_work())
