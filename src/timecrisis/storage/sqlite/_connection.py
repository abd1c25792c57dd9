"""One SQLite connection owned by one thread, and transactions that survive a busy database.

Why a thread of our own rather than aiosqlite: a storage call here is a whole transaction of
several statements. Running the transaction as ONE function in the connection's thread costs one
thread hop per call (aiosqlite hops per statement), and the write lock is never held across event
loop turns, so other processes wait for microseconds, not for our event loop.

Settings: WAL (readers never block the writer and other processes), `synchronous=NORMAL` (a
committed transaction survives a process crash, our failure model; only a power cut can lose the
last commits), foreign keys on, and a `busy_timeout`. Writes open with `BEGIN IMMEDIATE`, taking
the write lock up front so a transaction never fails half-way on a lock upgrade. A `database is
locked` that still escapes is retried, whole transaction, with backoff until `busy_timeout`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from timecrisis.errors import StorageError

T = TypeVar("T")

Transaction = Callable[[sqlite3.Connection], T]


def open_connection(path: Path, busy_timeout: float) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path,
        timeout=busy_timeout,
        isolation_level=None,  # we issue BEGIN/COMMIT ourselves
        check_same_thread=True,
        cached_statements=256,
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
    return conn


def is_busy(error: sqlite3.Error) -> bool:
    text = str(error).lower()
    return "locked" in text or "busy" in text


class ConnectionThread:
    """Runs transactions on a private connection in a private thread."""

    def __init__(self, path: Path, busy_timeout: float, name: str = "timecrisis-sqlite") -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._lock = threading.Lock()

    async def write(self, fn: Transaction[T]) -> T:
        """Run `fn(conn)` inside `BEGIN IMMEDIATE ... COMMIT`."""
        return await self._submit(fn, "BEGIN IMMEDIATE")

    async def read(self, fn: Transaction[T]) -> T:
        """Run `fn(conn)` inside a read transaction (one consistent snapshot)."""
        return await self._submit(fn, "BEGIN")

    async def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_connection)
        self._executor.shutdown(wait=True)

    async def _submit(self, fn: Transaction[T], begin: str) -> T:
        if self._closed:
            raise StorageError("the SQLite store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._transaction, fn, begin)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self._conn = open_connection(self._path, self._busy_timeout)
            except sqlite3.Error as exc:
                raise StorageError(f"cannot open SQLite database {self._path}: {exc}") from exc
        return self._conn

    def _transaction(self, fn: Transaction[T], begin: str) -> T:
        conn = self._connection()
        deadline = time.monotonic() + self._busy_timeout
        delay = 0.001
        while True:
            try:
                conn.execute(begin)
                try:
                    result = fn(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                return result
            except sqlite3.OperationalError as exc:
                if is_busy(exc) and time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.05)
                    continue
                raise StorageError(f"SQLite error: {exc}") from exc
            except sqlite3.Error as exc:
                raise StorageError(f"SQLite error: {exc}") from exc

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
