"""The systems under test, behind one small interface, so every workload is written once.

A `System` prepares a fresh store, enqueues (as a producer in the benchmark's own process),
names the command of a worker process, and answers "is anything left?" by asking the store
directly (plain SQL or Redis commands, never the worker). Ours are `memory`, `sqlite` and
`postgres`; the peers live in `benchmarks.peers`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import psycopg

from benchmarks import app, app_fork
from benchmarks.config import CONCURRENCY, POSTGRES_URL, ROOT, Counts
from benchmarks.pg import ensure_database
from timecrisis import InMemoryJobStorage, JobScheduler, SQLiteJobStorage
from timecrisis.storage.base import JobStorage
from timecrisis.storage.postgres import PostgresJobStorage

JOB_TYPES = (app.NOOP, app.STAMP, app_fork.NOOP_FORK)


class System(Protocol):
    name: str
    in_process: bool  # True: the worker runs inside the benchmark process (memory only)

    async def reset(self) -> None:
        """An empty store (or, for a history store, only its history)."""

    async def enqueue_one(self, job_type: str, payload: dict[str, Any]) -> None: ...

    async def enqueue_many(self, job_type: str, payloads: list[dict[str, Any]]) -> None: ...

    def worker_command(self, fork: bool) -> list[str]:
        """argv of one worker process with concurrency CONCURRENCY."""

    def worker_env(self) -> dict[str, str]: ...

    async def outstanding(self) -> bool:
        """Whether any job is still pending or running."""

    async def finished(self) -> int:
        """How many benchmark jobs completed successfully."""

    async def settle(self) -> None:
        """After a prefill: bring the store to the state a long-running one is in (PostgreSQL:
        planner statistics that know about the backlog, as autovacuum would leave them)."""

    async def close(self) -> None: ...

    async def discard(self) -> None:
        """After the case: remove what it left on a shared server (a peer's schema, its Redis
        keys). Ours leave theirs to the next reset: a temporary file, the benchmark's schema."""


@runtime_checkable
class ForeignClient(Protocol):
    """A system whose client is not Python (BullMQ, in Node): the timed enqueues of W1 and W3
    run in its own language, in one process of their own, so no process start or pipe between
    two languages is ever timed. The rest of each workload is shared."""

    async def w1(self, counts: Counts) -> dict[str, Any]:
        """W1's result: `one_per_s` and `many_per_s`."""

    async def w3_enqueues(self, counts: Counts, warmups: int, stamps: Path) -> dict[int, float]:
        """W3's warm-ups (each awaited in `stamps`), then its timed enqueues: n -> the wall
        time at which the enqueue of stamp job n returned."""


def python_env() -> dict[str, str]:
    """The environment of a worker process: the repository importable, logs quiet."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


class _Ours:
    """What the memory, SQLite and PostgreSQL systems share: a producer-only JobScheduler."""

    name = "?"
    in_process = False

    def __init__(self) -> None:
        self._producer: JobScheduler | None = None

    def _storage(self) -> JobStorage:
        raise NotImplementedError

    def url(self) -> str:
        raise NotImplementedError

    def producer(self) -> JobScheduler:
        if self._producer is None:
            scheduler = JobScheduler(self._storage(), max_concurrent_jobs=CONCURRENCY)
            self._producer = app_fork.build(app.build(scheduler))
        return self._producer

    async def enqueue_one(self, job_type: str, payload: dict[str, Any]) -> None:
        await self.producer().enqueue(job_type, payload)

    async def enqueue_many(self, job_type: str, payloads: list[dict[str, Any]]) -> None:
        await self.producer().enqueue_many(job_type, payloads)

    def worker_command(self, fork: bool) -> list[str]:
        target = "benchmarks.app_fork:scheduler" if fork else "benchmarks.app:scheduler"
        return [
            sys.executable,
            "-m",
            "timecrisis.cli",
            "worker",
            target,
            "--storage",
            self.url(),
            "--concurrency",
            str(CONCURRENCY),
            "--log-level",
            "warning",
        ]

    def worker_env(self) -> dict[str, str]:
        return python_env()

    async def settle(self) -> None:
        return None

    async def discard(self) -> None:
        return None

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.close()
            self._producer = None


class Memory(_Ours):
    """The in-memory store: one process, so the worker runs in the benchmark's process."""

    name = "memory"
    in_process = True

    def __init__(self) -> None:
        super().__init__()
        self._store = InMemoryJobStorage()

    def _storage(self) -> JobStorage:
        return self._store

    async def reset(self) -> None:
        await self.close()
        self._store = InMemoryJobStorage()

    @contextlib.asynccontextmanager
    async def worker(self) -> AsyncIterator[JobScheduler]:
        """A started worker on the same store as the producer."""
        worker = app_fork.build(
            app.build(JobScheduler(self._store, max_concurrent_jobs=CONCURRENCY))
        )
        await worker.start()
        try:
            yield worker
        finally:
            await worker.stop()

    async def outstanding(self) -> bool:
        metrics = await self._store.get_metrics()
        return metrics.pending + metrics.running > 0

    async def finished(self) -> int:
        return (await self._store.get_metrics()).completed


def _remove_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


class SQLite(_Ours):
    name = "sqlite"

    def __init__(self, path: Path, *, history: bool = False) -> None:
        super().__init__()
        self.path = path
        self.history = history
        self._reader: sqlite3.Connection | None = None
        self._base_seq = 0  # jobs above this seq are this run's

    def _storage(self) -> JobStorage:
        return SQLiteJobStorage(self.path)

    def url(self) -> str:
        return f"sqlite:///{self.path}"  # the path is absolute: four slashes in all

    async def reset(self) -> None:
        await self.close()
        if not self.history:
            _remove_files(self.path)
            self._base_seq = 0
            return
        with contextlib.closing(sqlite3.connect(self.path, timeout=60)) as conn:
            (self._base_seq,) = conn.execute("SELECT value FROM bench_history").fetchone()
            with conn:
                conn.execute(
                    "DELETE FROM job_runs WHERE job_id IN (SELECT id FROM jobs WHERE seq > ?)",
                    (self._base_seq,),
                )
                conn.execute("DELETE FROM jobs WHERE seq > ?", (self._base_seq,))
                conn.execute("DELETE FROM workers")
                conn.execute("DELETE FROM locks")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _read(self) -> sqlite3.Connection:
        if self._reader is None:
            self._reader = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        return self._reader

    async def outstanding(self) -> bool:
        row = (
            self._read()
            .execute(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'pending') "
                "OR EXISTS (SELECT 1 FROM jobs WHERE status = 'running')"
            )
            .fetchone()
        )
        return bool(row[0])

    async def finished(self) -> int:
        row = (
            self._read()
            .execute(
                "SELECT count(*) FROM jobs WHERE seq > ? AND status = 'completed'",
                (self._base_seq,),
            )
            .fetchone()
        )
        return int(row[0])

    async def close(self) -> None:
        await super().close()
        if self._reader is not None:
            self._reader.close()
            self._reader = None


class Postgres(_Ours):
    name = "postgres"

    def __init__(self, schema: str = "tcbench", *, history: bool = False) -> None:
        super().__init__()
        self.schema = schema
        self.history = history
        self._reader: psycopg.AsyncConnection[Any] | None = None
        self._base_seq = 0

    def _storage(self) -> JobStorage:
        return PostgresJobStorage(POSTGRES_URL, schema=self.schema)

    def url(self) -> str:
        sep = "&" if "?" in POSTGRES_URL else "?"
        return f"{POSTGRES_URL}{sep}schema={self.schema}"

    async def reset(self) -> None:
        await self.close()
        await ensure_database(POSTGRES_URL)
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
            if not self.history:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
                self._base_seq = 0
                return
            cur = await conn.execute(f'SELECT value FROM "{self.schema}".bench_history')
            row = await cur.fetchone()
            assert row is not None
            self._base_seq = int(row[0])
            async with conn.transaction():
                await conn.execute(
                    f'DELETE FROM "{self.schema}".job_runs WHERE job_id IN '
                    f'(SELECT id FROM "{self.schema}".jobs WHERE seq > %s)',
                    (self._base_seq,),
                )
                await conn.execute(
                    f'DELETE FROM "{self.schema}".jobs WHERE seq > %s', (self._base_seq,)
                )
                await conn.execute(f'DELETE FROM "{self.schema}".workers')
                await conn.execute(f'DELETE FROM "{self.schema}".locks')

    async def _read(self) -> psycopg.AsyncConnection[Any]:
        if self._reader is None:
            self._reader = await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True)
        return self._reader

    async def settle(self) -> None:
        conn = await self._read()
        await conn.execute(f'ANALYZE "{self.schema}".jobs')

    async def outstanding(self) -> bool:
        conn = await self._read()
        cur = await conn.execute(
            f"SELECT EXISTS (SELECT 1 FROM \"{self.schema}\".jobs WHERE status = 'pending') "
            f"OR EXISTS (SELECT 1 FROM \"{self.schema}\".jobs WHERE status = 'running')"
        )
        row = await cur.fetchone()
        return bool(row and row[0])

    async def finished(self) -> int:
        conn = await self._read()
        cur = await conn.execute(
            f"SELECT count(*) FROM \"{self.schema}\".jobs WHERE seq > %s AND status = 'completed'",
            (self._base_seq,),
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def close(self) -> None:
        await super().close()
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
