"""Bad input at the library's defaults (issue 11, items 9-11): a refused enqueue leaves the worker
and the store as they were, and a job at the largest accepted bounds runs like any other."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

from tests.defaults.conftest import DefaultSchedulerFactory
from timecrisis import InvalidDurationError, JobContext, JobStatus, JobValidationError


class Work(BaseModel):
    n: int


async def test_refused_input_writes_nothing_and_the_largest_accepted_job_runs(
    default_scheduler: DefaultSchedulerFactory,
) -> None:
    scheduler = default_scheduler()

    @scheduler.job("work", concurrency=None)
    async def work(data: Work, ctx: JobContext) -> int:
        return data.n * 2

    async with scheduler:
        # Once accepted by PostgreSQL, these stored year 10240: every later read of the row,
        # the worker's claim and the reaper then failed.
        with pytest.raises(InvalidDurationError):
            await scheduler.enqueue("work", {"n": 1}, expires_in="3000000d")
        with pytest.raises(InvalidDurationError):
            await scheduler.enqueue("work", {"n": 1}, delay="3000000d")
        with pytest.raises(JobValidationError):
            await scheduler.enqueue("work", {"n": 1}, max_retries=2**31)
        with pytest.raises(JobValidationError):
            await scheduler.enqueue("work", {"n": 1}, entity_id="a\x00b")
        assert await scheduler.list_jobs() == []

        largest = await scheduler.enqueue(
            "work", {"n": 21}, max_retries=1_000_000, expires_in="36500d", entity_id="e" * 1024
        )
        parked = await scheduler.enqueue("work", {"n": 0}, run_at=datetime(9999, 1, 1, tzinfo=UTC))
        done = await scheduler.wait_for_job(largest, timeout=10)

        assert done.status is JobStatus.COMPLETED and done.result == 42
        waiting = await scheduler.get_job(parked)
        assert waiting is not None and waiting.status is JobStatus.PENDING
        assert len(await scheduler.list_jobs()) == 2
