"""One SQLite connection, owned by one private thread, running whole transactions.

**Why a thread of our own, and not aiosqlite.** A storage call is a transaction of several
statements (a claim counts running jobs, updates the queue head and inserts runs). This module
runs each call as ONE function in the connection's thread: one thread hop per call, where
aiosqlite hops once per statement. The write lock is therefore held only while that function
runs, never across event-loop turns, so other processes wait microseconds for it instead of
waiting for our event loop to get round to the next statement. The connection keeps
`check_same_thread=True`: only this thread ever touches it.

**The thread** is a daemon, started on first use and stopped by `close()`, which joins it. A
store that is never closed therefore never keeps the interpreter from exiting; the process
then simply ends, which SQLite treats like a crash: an unfinished transaction is rolled back
from the WAL by the next connection, and nothing committed is lost.

**Settings.** WAL, so readers never block the writer and several processes share the file;
`synchronous=NORMAL`, which in WAL mode makes every commit durable against a crash of the
process (our failure model: workers get killed) and only lets a power cut or an OS crash lose
the last commits, while saving an fsync per commit; foreign keys on (runs and logs are deleted
with their job); and a `busy_timeout`.

**Writes** open with `BEGIN IMMEDIATE`: the write lock is taken up front, so a transaction that
read something never fails on upgrading to write (the classic `SQLITE_BUSY` of deferred
transactions), and every read-then-write inside one call is atomic across processes. A busy
error that still escapes SQLite's own busy handler (recovery after a crash, a checkpoint) makes
the whole transaction function run again after a short randomised backoff, until
`busy_timeout` has passed; then `StorageError`. Every sqlite3 error surfaces as `StorageError`
with the driver's exception as `__cause__`.

**Time.** The transaction function receives `now` from the store's clock, read once, after the
transaction began: a call that waited for the write lock decides with the time it got the
lock, not the time it asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from queue import SimpleQueue
from typing import Any, TypeVar

from timecrisis.clock import Clock
from timecrisis.errors import StorageError
from timecrisis.storage._common import new_id
from timecrisis.storage.sqlite._counts import run_bucket

T = TypeVar("T")

Transaction = Callable[[sqlite3.Connection, datetime], T]
"""A function run inside one transaction: `fn(connection, now)`."""

# RETURNING and several ON CONFLICT clauses per INSERT both need SQLite 3.35 (March 2021).
MIN_SQLITE_VERSION = (3, 35, 0)

_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_FIRST_PAUSE = 0.001
_MAX_PAUSE = 0.05
# close() waits this long for the call in progress (a locked database or a full disk can hold
# one for `busy_timeout`); then it returns and the daemon thread ends once that call does.
_CLOSE_WAIT = 1.0

logger = logging.getLogger("timecrisis.storage.sqlite")


def open_connection(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """A connection with the store's settings (see the module docstring)."""
    if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
        raise StorageError(
            f"SQLiteJobStorage needs SQLite >= {'.'.join(map(str, MIN_SQLITE_VERSION))}; "
            f"this Python links SQLite {sqlite3.sqlite_version}"
        )
    conn = sqlite3.connect(
        path,
        timeout=busy_timeout,  # SQLite's own busy handler waits up to this long for a lock
        isolation_level=None,  # no implicit transactions: every BEGIN/COMMIT is ours
        check_same_thread=True,
        cached_statements=256,
    )
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageError(
                f"SQLite refused WAL mode for {path} (journal_mode is {mode!r}); the store "
                "needs WAL to share the file between processes"
            )
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        # Fresh tokens and run ids inside a claim's UPDATE come from the same generator as
        # every other id, so every backend's ids look alike.
        conn.create_function("timecrisis_new_id", 0, new_id)
        # The run counters' duration bucket (`_counts`): the shared `duration_bucket` itself,
        # so the counters agree with every store's to the bound.
        conn.create_function("timecrisis_run_bucket", 1, run_bucket, deterministic=True)
    except BaseException:
        conn.close()
        raise
    return conn


def is_busy(error: sqlite3.Error) -> bool:
    """Whether `error` means "another connection holds the lock": worth trying again."""
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)  # extended codes keep the base
    text = str(error).lower()
    return "locked" in text or "busy" in text


def describe(error: sqlite3.Error, busy_timeout: float) -> str:
    if is_busy(error):
        return (
            f"the SQLite database stayed locked for more than busy_timeout={busy_timeout:g}s "
            f"({error})"
        )
    return f"SQLite error: {error}"


def _nothing(conn: sqlite3.Connection, now: datetime) -> None:
    """The transaction of `ready()`: only the one-time setup before it matters."""


_Work = tuple[Callable[[], Any], "Future[Any]"]


class ConnectionThread:
    """Runs transaction functions, one at a time, on a private connection in a private thread.

    `setup` runs once, under `BEGIN IMMEDIATE`, before the first transaction, if `needs_setup`
    (asked in a read transaction) says so; the store passes its migrations. So every call is
    lazily initialised without an extra thread hop, and calls queued behind the first one cannot
    overtake it. If `setup` fails, the next call tries again.
    """

    def __init__(
        self,
        path: Path,
        *,
        clock: Clock,
        busy_timeout: float,
        setup: Transaction[None],
        needs_setup: Callable[[sqlite3.Connection], bool] = lambda conn: True,
    ) -> None:
        self._path = path
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._setup = setup
        self._needs_setup = needs_setup
        self._queue: SimpleQueue[_Work | None] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()
        self._stopped: Future[None] = Future()
        self._closed = False
        # Confined to the connection thread:
        self._conn: sqlite3.Connection | None = None
        self._set_up = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def write(self, fn: Transaction[T]) -> T:
        """`fn(conn, now)` inside `BEGIN IMMEDIATE ... COMMIT`."""
        return await self._submit(lambda: self._run(fn, "BEGIN IMMEDIATE"))

    async def read(self, fn: Transaction[T]) -> T:
        """`fn(conn, now)` inside a read transaction: one consistent snapshot."""
        return await self._submit(lambda: self._run(fn, "BEGIN"))

    async def ready(self) -> None:
        """Open the connection and run `setup` if that has not happened yet."""
        await self._submit(lambda: self._run(_nothing, "BEGIN"))

    async def close(self) -> None:
        """Finish the queued calls, close the connection, and join the thread. Idempotent."""
        if not self._closed:
            self.shutdown_nowait()
        if self._thread is None:
            return
        # asyncio.wait, not wait_for: cancelling the wrapper would cancel `_stopped` itself.
        await asyncio.wait([asyncio.wrap_future(self._stopped)], timeout=_CLOSE_WAIT)
        if not self._stopped.done():
            logger.warning(
                "closing the SQLite store on %s without waiting for the call in progress (the "
                "database is locked or the disk is slow); it ends in the background",
                self._path,
            )
            return
        # The thread's last act was to settle `_stopped`: this join returns at once.
        self._thread.join()

    def shutdown_nowait(self) -> None:
        """Refuse new calls and let the thread finish the queued ones and stop, without waiting
        (for garbage collection of a store that was never closed)."""
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
        elif not self._stopped.done():
            self._stopped.set_result(None)

    # ---- the calling side --------------------------------------------------------------------

    async def _submit(self, call: Callable[[], T]) -> T:
        if self._closed:
            raise StorageError(f"the SQLite store on {self._path} is closed")
        future: Future[T] = Future()
        self._queue.put((call, future))
        if self._thread is None:
            with self._starting:  # two loops in two threads may make the first call together
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._serve,
                        name=f"timecrisis-sqlite:{self._path.name}",
                        daemon=True,
                    )
                    self._thread.start()
        # If the caller is cancelled before the thread picks the call up, the call is skipped;
        # once it runs, it runs to its end (a transaction is never cut in half).
        return await asyncio.wrap_future(future)

    # ---- the connection thread ---------------------------------------------------------------

    def _serve(self) -> None:
        try:
            while (work := self._queue.get()) is not None:
                call, future = work
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    result = call()
                except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
                    future.set_exception(exc)
                else:
                    future.set_result(result)
        finally:
            self._drop_connection()
            while not self._queue.empty():  # calls queued after close() was asked for
                late = self._queue.get()
                if late is not None and late[1].set_running_or_notify_cancel():
                    late[1].set_exception(StorageError(f"the SQLite store on {self._path} closed"))
            self._stopped.set_result(None)

    def _run(self, fn: Transaction[T], begin: str) -> T:
        deadline = time.monotonic() + self._busy_timeout
        pause = _FIRST_PAUSE
        while True:
            try:
                conn = self._connection()
                if not self._set_up:
                    self._set_up_once(conn)
                return self._transaction(conn, fn, begin)
            except sqlite3.Error as exc:
                if not is_busy(exc) or time.monotonic() >= deadline:
                    raise StorageError(describe(exc, self._busy_timeout)) from exc
            # Randomised, so contending processes do not retry in lockstep.
            time.sleep(pause * (0.5 + random.random()))
            pause = min(pause * 2, _MAX_PAUSE)

    def _set_up_once(self, conn: sqlite3.Connection) -> None:
        # Asked in a read transaction first: an up-to-date file (the usual case) is then opened
        # without the write lock, so a first read never waits behind another process's writes.
        if self._transaction(conn, lambda c, now: self._needs_setup(c), "BEGIN"):
            self._transaction(conn, self._setup, "BEGIN IMMEDIATE")
        self._set_up = True

    def _transaction(self, conn: sqlite3.Connection, fn: Transaction[T], begin: str) -> T:
        conn.execute(begin)
        try:
            result = fn(conn, self._clock.now())
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        return result

    def _rollback(self, conn: sqlite3.Connection) -> None:
        if not conn.in_transaction:  # SQLite already rolled back (some errors do that)
            return
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            # A connection that cannot roll back is not trusted again: the next call reopens.
            self._drop_connection()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = open_connection(self._path, self._busy_timeout)
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # It is being discarded: an error closing it leaves nothing more to do.
            with contextlib.suppress(sqlite3.Error):
                conn.close()
