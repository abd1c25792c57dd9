"""Cross-process wake-ups for SQLite, which cannot push: watch `PRAGMA data_version`.

`PRAGMA data_version` on a connection changes whenever ANOTHER connection commits to the file,
and reading it only looks at the WAL index in shared memory (no table, no lock held after the
statement), so polling it every 20 ms costs a few microseconds. A change means "something was
written, maybe a job": listeners are woken and their next claim decides. With the default
interval a job enqueued by another process is claimed here within about 20 to 50 ms (the poll
interval, plus the hop to the event loop and the claim).

Any commit counts, including this process's own completions and heartbeats (they come from
another connection of the same file), so a busy worker gets a few spurious wake-ups per second,
each costing one empty claim. The alternative, guessing which commits matter, could miss real
work; wake-ups are hints and listeners still poll.

The watcher runs only while someone listens: its daemon thread starts with the first listener
and stops with the last one, and at `close()`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path


class DataVersionWatcher:
    def __init__(self, path: Path, interval: float, on_change: Callable[[], None]) -> None:
        self._path = path
        self._interval = interval
        self._on_change = on_change
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and not self._stop.is_set():
                return
            # A fresh event per thread: a thread told to stop keeps its own (set) event while
            # it winds down, even if a new listener starts a new thread meanwhile.
            self._stop = threading.Event()
            # The baseline is read here, before start() returns, not by the thread: a commit
            # another process makes right after a listener subscribes must wake it, and a
            # thread that starts late (a loaded machine) would take that commit as its baseline.
            conn, last = self._open_with_baseline()
            self._thread = threading.Thread(
                target=self._watch,
                args=(self._stop, conn, last),
                name=f"timecrisis-sqlite-watch:{self._path.name}",
                daemon=True,  # an unclosed store must never keep the interpreter alive
            )
            self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop; it does within one poll interval. Does not wait."""
        with self._lock:
            self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _connect(self) -> sqlite3.Connection:
        # mode=rw: never create the file (an empty non-WAL file); until the store creates it,
        # opening fails and is simply tried again at the next tick. `data_version` is per
        # connection, so the thread keeps the connection its baseline was read on.
        uri = f"{self._path.absolute().as_uri()}?mode=rw"
        return sqlite3.connect(
            uri, uri=True, timeout=1, isolation_level=None, check_same_thread=False
        )

    def _open_with_baseline(self) -> tuple[sqlite3.Connection | None, int | None]:
        try:
            conn = self._connect()
        except sqlite3.Error:
            return None, None  # no file yet: the thread keeps trying
        try:
            version: int = conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return conn, None  # busy for a moment: the thread's first look is the baseline
        return conn, version

    def _watch(
        self, stop: threading.Event, conn: sqlite3.Connection | None, last: int | None
    ) -> None:
        try:
            while not stop.is_set():
                try:
                    if conn is None:
                        conn = self._connect()
                    version = conn.execute("PRAGMA data_version").fetchone()[0]
                except sqlite3.Error:
                    version = None  # missing, or busy for a moment: try again at the next tick
                if version is not None:
                    if last is not None and version != last:
                        self._on_change()
                    last = version
                stop.wait(self._interval)
        finally:
            if conn is not None:
                conn.close()
