"""pgqueuer on the benchmark's PostgreSQL database, in a schema of its own (`tcbench_pgqueuer`,
NOTIFY channel `tcbench_pgqueuer`), installed by every case and dropped after it.

Driver: asyncpg, the one pgqueuer's README sets up (its `asyncpg` extra). Worker: what `pgq run`
does (`pgqueuer.run`, its supervisor, on uvloop, which pgqueuer installs and its CLI uses) with
the factory `create_worker` below, a `QueueManager` with its defaults except the cap of 10 jobs
at once: `max_concurrent_tasks=10`, with `batch_size=5`, the largest batch pgqueuer allows under
that cap (it wants the cap at least twice the batch). Not the `pgq run` command itself: in
pgqueuer 1.6.0 (with typer 0.29) it fails on its own `--log-level` default.

Enqueue: `Queries.enqueue` of one job at a time; for a batch, the list form of the same call
(one INSERT ... UNNEST).

A completed job is deleted from the queue table and logged as `successful` in the log table:
that is where `finished` counts."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import psycopg
import uvloop
from pgqueuer import Job, Queries, QueueManager, run
from pgqueuer.adapters.persistence.qb import (
    QueryBuilderEnvironment,
    QueryQueueBuilder,
    QuerySchedulerBuilder,
)
from pgqueuer.db import AsyncpgDriver
from pgqueuer.domain.settings import DBSettings
from pgqueuer.domain.types import Channel

from benchmarks.app import NOOP, STAMP
from benchmarks.config import CONCURRENCY, POSTGRES_URL
from benchmarks.handlers import write_stamp
from benchmarks.pg import ensure_database
from benchmarks.systems import python_env

SCHEMA = "tcbench_pgqueuer"
SETTINGS = DBSettings(db_schema=SCHEMA, channel=Channel(SCHEMA))
BATCH = CONCURRENCY // 2
"""Jobs one dequeue takes: pgqueuer refuses a batch above half of `max_concurrent_tasks`."""


def _queries(connection: asyncpg.Connection) -> Queries:
    return Queries(
        AsyncpgDriver(connection),
        qbe=QueryBuilderEnvironment(SETTINGS),
        qbq=QueryQueueBuilder(SETTINGS),
        qbs=QuerySchedulerBuilder(SETTINGS),
    )


def _payload(payload: dict[str, Any]) -> bytes | None:
    return json.dumps(payload).encode() if payload else None


class Pgqueuer:
    name = "pgqueuer"
    in_process = False

    def __init__(self) -> None:
        self._connection: asyncpg.Connection | None = None
        self._producer: Queries | None = None
        self._reader: psycopg.AsyncConnection[Any] | None = None

    async def _q(self) -> Queries:
        if self._producer is None:
            self._connection = await asyncpg.connect(POSTGRES_URL)
            self._producer = _queries(self._connection)
        return self._producer

    async def reset(self) -> None:
        await ensure_database(POSTGRES_URL)
        await self.discard()
        await (await self._q()).install()

    async def discard(self) -> None:
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')

    async def enqueue_one(self, job_type: str, payload: dict[str, Any]) -> None:
        await (await self._q()).enqueue(job_type, _payload(payload))

    async def enqueue_many(self, job_type: str, payloads: list[dict[str, Any]]) -> None:
        await (await self._q()).enqueue(
            [job_type] * len(payloads), [_payload(p) for p in payloads], [0] * len(payloads)
        )

    def worker_command(self, fork: bool) -> list[str]:
        return [sys.executable, "-m", "benchmarks.peers.pgqueuer_peer", "worker"]

    def worker_env(self) -> dict[str, str]:
        return python_env()

    async def _read(self) -> psycopg.AsyncConnection[Any]:
        if self._reader is None:
            self._reader = await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True)
        return self._reader

    async def settle(self) -> None:
        await (await self._read()).execute(f'ANALYZE "{SCHEMA}".pgqueuer')

    async def outstanding(self) -> bool:
        cur = await (await self._read()).execute(
            f'SELECT EXISTS (SELECT 1 FROM "{SCHEMA}".pgqueuer)'
        )
        row = await cur.fetchone()
        return bool(row and row[0])

    async def finished(self) -> int:
        cur = await (await self._read()).execute(
            f"SELECT count(*) FROM \"{SCHEMA}\".pgqueuer_log WHERE status = 'successful'"
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
            self._producer = None
        if self._reader is not None:
            await self._reader.close()
            self._reader = None


@contextlib.asynccontextmanager
async def create_worker() -> AsyncIterator[QueueManager]:
    """The factory `pgq run` starts: a queue manager with the benchmark's two job types."""
    connection = await asyncpg.connect(POSTGRES_URL)
    try:
        manager = QueueManager(_queries(connection), channel=SETTINGS.channel)

        @manager.entrypoint(NOOP)
        async def noop(job: Job) -> None:
            return None

        @manager.entrypoint(STAMP)
        async def stamp(job: Job) -> None:
            assert job.payload is not None
            write_stamp(json.loads(job.payload)["n"])

        yield manager
    finally:
        await connection.close()


if __name__ == "__main__" and sys.argv[1:] == ["worker"]:
    uvloop.run(run(create_worker, batch_size=BATCH, max_concurrent_tasks=CONCURRENCY))
