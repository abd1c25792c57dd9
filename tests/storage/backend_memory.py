"""The conformance harness of `InMemoryJobStorage`: one store, shared by every handle."""

from __future__ import annotations

import pathlib

from tests.storage.harness import StoreHarness
from timecrisis.clock import ManualClock
from timecrisis.storage.base import JobStorage
from timecrisis.storage.memory import InMemoryJobStorage


class MemoryHarness:
    def __init__(self, clock: ManualClock) -> None:
        self._store = InMemoryJobStorage(clock=clock)

    async def open(self) -> JobStorage:
        # One process, one store: every "handle" is the store itself.
        return self._store

    async def aclose(self) -> None:
        await self._store.close()


def make_harness(tmp_path: pathlib.Path, clock: ManualClock) -> StoreHarness:
    del tmp_path  # nothing touches the disk
    return MemoryHarness(clock)
