"""The conformance harness of the naive `ReferenceJobStorage` (`tests/reference_store.py`), the
oracle of the model-based test: it must meet the same contract as the real stores."""

from __future__ import annotations

import pathlib

from tests.reference_store import ReferenceJobStorage
from tests.storage.harness import StoreHarness
from timecrisis.clock import ManualClock
from timecrisis.storage.base import JobStorage


class ReferenceHarness:
    def __init__(self, clock: ManualClock) -> None:
        self._store = ReferenceJobStorage(clock=clock)

    async def open(self) -> JobStorage:
        return self._store  # one process, one store, as for the in-memory store

    async def aclose(self) -> None:
        await self._store.close()


def make_harness(tmp_path: pathlib.Path, clock: ManualClock) -> StoreHarness:
    del tmp_path
    return ReferenceHarness(clock)
