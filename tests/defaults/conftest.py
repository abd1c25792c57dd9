"""End-to-end tests with every option at the library's default (DESIGN §4, "Defaults are the
product").

The schedulers built here take no interval, TTL or timeout option at all: what these tests prove
is what a user who copies the README gets. They take real seconds, so each waits on an outcome
with a deadline (`eventually`), never on a fixed sleep followed by a timed assert, and the suite
as a whole stays under two minutes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.pg_support import adrop_schema, fresh_schema, require_postgres
from tests.scheduler.conftest import stop_or_dump
from timecrisis import (
    InMemoryJobStorage,
    JobScheduler,
    JobStorage,
    PostgresJobStorage,
    SQLiteJobStorage,
)

# Options a test may still pass: they name the worker or size its pool, never a loop's pace.
ALLOWED_OPTIONS = frozenset(
    {
        "worker",
        "max_concurrent_jobs",
        "logger",
        "on_job_started",
        "on_job_completed",
        "on_job_failed",
    }
)

DefaultSchedulerFactory = Callable[..., JobScheduler]


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStorage]:
    """The reference store, the embedded default and PostgreSQL (a fresh schema per test)."""
    if request.param == "memory":
        storage: JobStorage = InMemoryJobStorage()
        yield storage
        await storage.close()
    elif request.param == "sqlite":
        storage = SQLiteJobStorage(tmp_path / "jobs.db")
        yield storage
        await storage.close()
    else:
        url, schema = require_postgres(), fresh_schema()
        storage = PostgresJobStorage(url, schema=schema)
        try:
            yield storage
        finally:
            await storage.close()
            await adrop_schema(url, schema)


@pytest.fixture
async def default_scheduler(store: JobStorage) -> AsyncIterator[DefaultSchedulerFactory]:
    """Builds schedulers at the library's defaults; stops every one of them at teardown (while
    the store is still open: this fixture depends on `store`)."""
    created: list[JobScheduler] = []

    def factory(storage: JobStorage | None = None, **options: Any) -> JobScheduler:
        tuned = sorted(set(options) - ALLOWED_OPTIONS)
        if tuned:
            raise AssertionError(f"tests/defaults must not tune {tuned}: use the defaults")
        scheduler = JobScheduler(store if storage is None else storage, **options)
        created.append(scheduler)
        return scheduler

    yield factory
    for scheduler in created:
        await stop_or_dump(scheduler)
