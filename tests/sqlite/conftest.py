"""Fixtures for the SQLite-specific tests: a database path per test, and stores on it that are
closed at teardown."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.storage.factories import START
from timecrisis.clock import ManualClock
from timecrisis.storage.sqlite import SQLiteJobStorage

StoreFactory = Callable[..., SQLiteJobStorage]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def db_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "jobs.db"


@pytest.fixture
async def make_store(db_path: pathlib.Path, clock: ManualClock) -> AsyncIterator[StoreFactory]:
    """Builds handles on the test's database (any constructor option may be given); every
    one is closed at teardown."""
    stores: list[SQLiteJobStorage] = []

    def factory(**options: Any) -> SQLiteJobStorage:
        options.setdefault("clock", clock)
        store = SQLiteJobStorage(options.pop("path", db_path), **options)
        stores.append(store)
        return store

    try:
        yield factory
    finally:
        for store in stores:
            await store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> SQLiteJobStorage:
    return make_store()
