"""End-to-end tests with every option at the library's default (DESIGN §4, "Defaults are the
product").

The schedulers built here take no interval, TTL or timeout option at all: what these tests prove
is what a user who copies the README gets. They take real seconds, so each waits on an outcome
with a deadline (`eventually`), never on a fixed sleep followed by a timed assert, and the suite
as a whole stays under two minutes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

# `store` is the end-to-end suite's: memory, SQLite and PostgreSQL (a fresh schema per test).
from tests.scheduler.conftest import stop_or_dump
from tests.scheduler.conftest import store as store
from timecrisis import JobScheduler, JobStorage

# Options a test may still pass: they name the worker or size its pool, never a loop's pace.
ALLOWED_OPTIONS = frozenset(
    {
        "worker",
        "max_concurrent_jobs",
        "logger",
        "on_job_started",
        "on_job_completed",
        "on_job_failed",
        "queues",  # which work the worker takes, not its pace
    }
)

DefaultSchedulerFactory = Callable[..., JobScheduler]


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
