"""The PostgreSQL harness of the conformance suite: a fresh schema per test, dropped afterwards;
every `open()` is a new store with its own pool on that schema, as another node would have.
Every handle uses the suite's `ManualClock` instead of the database's `now()`."""

from __future__ import annotations

import pathlib

from tests.pg_support import adrop_schema, fresh_schema, require_postgres
from timecrisis.clock import ManualClock
from timecrisis.storage.base import JobStorage
from timecrisis.storage.postgres import PostgresJobStorage


class PostgresHarness:
    def __init__(self, clock: ManualClock) -> None:
        self._url = require_postgres()
        self._schema = fresh_schema()
        self._clock = clock
        self._handles: list[PostgresJobStorage] = []

    async def open(self) -> JobStorage:
        store = PostgresJobStorage(
            self._url, schema=self._schema, clock=self._clock, max_pool_size=4
        )
        self._handles.append(store)
        return store

    async def aclose(self) -> None:
        try:
            for store in self._handles:
                await store.close()
        finally:
            self._handles.clear()
            await adrop_schema(self._url, self._schema)


def make_harness(tmp_path: pathlib.Path, clock: ManualClock) -> PostgresHarness:
    return PostgresHarness(clock)
