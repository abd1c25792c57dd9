"""Fixtures of the dashboard tests: a real store per backend (a SQLite file, a fresh
PostgreSQL schema), on a manual clock, filled with `support.seed`."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest

from tests.dashboard.support import START, Seeded, seed
from tests.pg_support import adrop_schema, fresh_schema, require_postgres
from timecrisis.clock import ManualClock
from timecrisis.storage.base import JobStorage
from timecrisis.storage.postgres import PostgresJobStorage
from timecrisis.storage.sqlite import SQLiteJobStorage

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture(params=BACKENDS)
async def storage(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path, clock: ManualClock
) -> AsyncIterator[JobStorage]:
    if request.param == "sqlite":
        sqlite_store = SQLiteJobStorage(tmp_path / "dashboard.db", clock=clock)
        try:
            yield sqlite_store
        finally:
            await sqlite_store.close()
        return
    url = require_postgres()
    schema = fresh_schema()
    pg_store = PostgresJobStorage(url, schema=schema, clock=clock, max_pool_size=4)
    try:
        yield pg_store
    finally:
        await pg_store.close()
        await adrop_schema(url, schema)


@pytest.fixture
async def seeded(storage: JobStorage, clock: ManualClock) -> Seeded:
    return await seed(storage, clock)
