"""The `data_version` watcher behind SQLite's cross-process wake-ups (sqlite/_watcher.py)."""

from __future__ import annotations

import pathlib
import sqlite3
import threading
from typing import Any

from tests.waiting import eventually
from timecrisis.storage.sqlite._watcher import DataVersionWatcher


class LateWatcher(DataVersionWatcher):
    """A watcher whose thread starts its loop late, as on a loaded machine."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.may_run = threading.Event()

    def _watch(self, *args: Any) -> None:
        self.may_run.wait(10)
        super()._watch(*args)


def _make_db(path: pathlib.Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x INTEGER)")
    conn.close()


async def test_a_commit_right_after_start_wakes_even_when_the_thread_starts_late(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "w.db"
    _make_db(path)
    changes: list[int] = []
    watcher = LateWatcher(path, 0.02, lambda: changes.append(1))
    watcher.start()
    try:
        # Another connection commits before the watcher's thread has looked at all: start()
        # must already have taken the baseline, or this commit becomes the baseline, unseen.
        with sqlite3.connect(path) as other:
            other.execute("INSERT INTO t VALUES (1)")
        other.close()
        watcher.may_run.set()

        async def woken() -> bool:
            return bool(changes)

        await eventually(woken)
    finally:
        watcher.stop()
        watcher.join(5)


async def test_a_watcher_started_before_the_file_exists_sees_it_once_created(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "later.db"
    changes: list[int] = []
    watcher = DataVersionWatcher(path, 0.02, lambda: changes.append(1))
    watcher.start()  # no file: no baseline yet, and the file must not be created by the watcher
    try:
        assert not path.exists()
        _make_db(path)
        assert watcher.running  # still polling

        # Once its thread has a baseline, a later commit wakes it.
        async def commit() -> bool:
            with sqlite3.connect(path) as other:
                other.execute("INSERT INTO t VALUES (1)")
            other.close()
            return bool(changes)

        await eventually(commit)
    finally:
        watcher.stop()
        watcher.join(5)
