"""What every backend provides to the conformance suite.

Each backend has a module `tests/storage/backend_<name>.py` with

    def make_harness(tmp_path: pathlib.Path, clock: ManualClock) -> StoreHarness: ...

The harness owns one store for one test. `open()` returns a NEW handle on that same store
(its own connections and threads), so race tests can claim through several handles the way
several processes would; a backend without such handles (memory) returns the same instance.
Every handle uses `clock` as the store's clock. `aclose()` closes every handle it opened and
drops the store.
"""

from __future__ import annotations

from typing import Protocol

from timecrisis.storage.base import JobStorage


class StoreHarness(Protocol):
    async def open(self) -> JobStorage: ...

    async def aclose(self) -> None: ...
