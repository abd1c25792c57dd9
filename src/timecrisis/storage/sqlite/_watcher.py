"""Cross-process wake-ups for SQLite, which cannot push: watch `PRAGMA data_version`.

`data_version` on a connection changes whenever ANOTHER connection commits to the file, and
reading it touches no table, so polling it every 20 ms costs microseconds. A change means
"something was written, maybe a job": listeners are woken and their claim decides. A wake-up is a
hint only; workers still poll at `job_processing_interval`.
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
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop = threading.Event()
            # A daemon thread: an unclosed store must never keep the interpreter alive.
            self._thread = threading.Thread(
                target=self._run, args=(self._stop,), name="timecrisis-sqlite-watch", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)

    def _run(self, stop: threading.Event) -> None:
        conn: sqlite3.Connection | None = None
        last: int | None = None
        try:
            while not stop.is_set():
                try:
                    if conn is None:
                        conn = sqlite3.connect(self._path, timeout=1, isolation_level=None)
                    version = conn.execute("PRAGMA data_version").fetchone()[0]
                except sqlite3.Error:
                    version = None  # the file may be busy or not created yet: try again
                if version is not None:
                    if last is not None and version != last:
                        self._on_change()
                    last = version
                stop.wait(self._interval)
        finally:
            if conn is not None:
                conn.close()
