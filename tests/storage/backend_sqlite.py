"""The SQLite harness of the conformance suite: every `open()` is a new handle (its own
connection and thread) on the same file, as separate processes would hold."""

from __future__ import annotations

import pathlib

from tests.storage.harness import StoreHarness
from timecrisis.clock import ManualClock
from timecrisis.storage.base import JobStorage
from timecrisis.storage.sqlite import SQLiteJobStorage

# Shorter than the default 20 ms, so wake-up tests that cross handles finish sooner.
WAKEUP_POLL_INTERVAL = 0.005


class SQLiteHarness:
    def __init__(self, path: pathlib.Path, clock: ManualClock) -> None:
        self._path = path
        self._clock = clock
        self._handles: list[SQLiteJobStorage] = []

    async def open(self) -> JobStorage:
        store = SQLiteJobStorage(
            self._path, clock=self._clock, wakeup_poll_interval=WAKEUP_POLL_INTERVAL
        )
        self._handles.append(store)
        return store

    async def aclose(self) -> None:
        handles, self._handles = self._handles, []
        for store in handles:
            await store.close()


def make_harness(tmp_path: pathlib.Path, clock: ManualClock) -> StoreHarness:
    return SQLiteHarness(tmp_path / "conformance.db", clock)
