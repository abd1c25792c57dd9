"""The SQLite harness of the conformance suite: every `open()` is a new handle (its own
connection and thread) on the same file, as separate processes would hold."""

from __future__ import annotations

import pathlib

from timecrisis.clock import ManualClock
from timecrisis.storage.base import JobStorage
from timecrisis.storage.sqlite import SQLiteJobStorage


class SQLiteHarness:
    def __init__(self, path: pathlib.Path, clock: ManualClock) -> None:
        self._path = path
        self._clock = clock
        self._handles: list[SQLiteJobStorage] = []

    async def open(self) -> JobStorage:
        store = SQLiteJobStorage(self._path, clock=self._clock, wakeup_poll_interval=0.005)
        self._handles.append(store)
        return store

    async def aclose(self) -> None:
        for store in self._handles:
            await store.close()
        self._handles.clear()


def make_harness(tmp_path: pathlib.Path, clock: ManualClock) -> SQLiteHarness:
    return SQLiteHarness(tmp_path / "conformance.db", clock)
