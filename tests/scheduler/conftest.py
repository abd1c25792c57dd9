"""Fixtures for end-to-end tests through the public API.

Schedulers here use short intervals so loops turn over in milliseconds; waits are on real
outcomes (`wait_for_job`, polled conditions with a generous limit), never fixed sleeps followed by a
timed assert."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tests.pg_support import adrop_schema, fresh_schema, require_postgres
from tests.waiting import eventually as eventually
from timecrisis import (
    InMemoryJobStorage,
    JobScheduler,
    JobStorage,
    PostgresJobStorage,
    SQLiteJobStorage,
)

FAST: dict[str, Any] = {
    "job_processing_interval": 0.05,
    "job_scheduling_interval": 0.05,
    "expired_job_check_interval": 0.05,
    "worker_heartbeat_interval": 0.25,
    "worker_inactive_check_interval": 0.1,
    "leader_lock_ttl": 0.6,
    "job_lock_ttl": 1.5,
    "shutdown_timeout": 2,
}


class Payload(BaseModel):
    n: int = 0
    text: str = ""


SchedulerFactory = Callable[..., JobScheduler]


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStorage]:
    """Every end-to-end test runs on the reference store, the embedded default and PostgreSQL
    (a fresh schema per test, dropped afterwards)."""
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
async def make_scheduler(store: JobStorage) -> AsyncIterator[SchedulerFactory]:
    """Builds schedulers with fast settings and stops every one of them at teardown.

    It depends on `store` so that pytest tears it down first: schedulers stop (and unregister
    their workers) while the store is still open."""
    created: list[JobScheduler] = []

    def factory(storage: JobStorage, **options: Any) -> JobScheduler:
        scheduler = JobScheduler(storage, **{**FAST, **options})
        created.append(scheduler)
        return scheduler

    yield factory
    for scheduler in created:
        await stop_or_dump(scheduler)


async def stop_or_dump(scheduler: JobScheduler, limit: float = 30.0) -> None:
    """`stop(force=True)`, which must return promptly. A hang fails the test with the stack of
    every task instead of hanging the run (pytest-timeout cannot interrupt an idle event loop:
    its exception lands in a callback, and asyncio swallows it there)."""
    try:
        async with asyncio.timeout(limit):
            await scheduler.stop(force=True)
    except TimeoutError:
        stacks = io.StringIO()
        for task in asyncio.all_tasks():
            task.print_stack(file=stacks)
        pytest.fail(
            f"stop(force=True) did not return within {limit} s; tasks:\n{stacks.getvalue()}"
        )
