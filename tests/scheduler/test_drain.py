"""`await scheduler.drain(timeout=)` (DESIGN §4, "Testing"): runs, in this process, every job
due now or becoming due while it runs, retries included; returns the jobs it finished."""

from __future__ import annotations

import asyncio

import pytest

from tests.scheduler.conftest import Payload, SchedulerFactory
from timecrisis import JobContext, JobScheduler, JobStatus, JobStorage


def _app(make_scheduler: SchedulerFactory, store: JobStorage) -> JobScheduler:
    scheduler = make_scheduler(store)
    attempts: dict[int, int] = {}

    @scheduler.job("flaky", concurrency=None, max_retries=2, retry_delay="100ms")
    async def flaky(data: Payload, ctx: JobContext) -> int:
        attempts[data.n] = attempts.get(data.n, 0) + 1
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return ctx.attempt

    @scheduler.job("parent", concurrency=None)
    async def parent(data: Payload, ctx: JobContext) -> str:
        return await scheduler.enqueue("flaky", {"n": data.n})

    @scheduler.job("forever", concurrency=None)
    async def forever(data: Payload, ctx: JobContext) -> None:
        await asyncio.sleep(3600)

    return scheduler


async def test_drain_runs_due_jobs_retries_and_their_children(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = _app(make_scheduler, store)
    flaky = await scheduler.enqueue("flaky", {"n": 1})
    parent = await scheduler.enqueue("parent", {"n": 2})
    later = await scheduler.enqueue("flaky", {"n": 3}, delay="1h")  # not due: left alone

    finished = await scheduler.drain(timeout=30)

    by_id = {job.id: job for job in finished}
    child = by_id[parent].result
    assert isinstance(child, str)
    assert set(by_id) == {flaky, parent, child}
    assert {job.status for job in finished} == {JobStatus.COMPLETED}
    assert by_id[flaky].result == 2 and by_id[flaky].attempts == 2  # the retry ran
    assert by_id[child].result == 2
    pending = await scheduler.get_job(later)
    assert pending is not None and pending.status == JobStatus.PENDING
    assert not scheduler.is_running  # drain started it, drain stopped it


async def test_drain_with_nothing_to_do_returns_at_once(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = _app(make_scheduler, store)
    assert await scheduler.drain(timeout=10) == []


async def test_drain_leaves_a_started_scheduler_running(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = _app(make_scheduler, store)
    async with scheduler:
        job_id = await scheduler.enqueue("flaky", {"n": 4})
        [done] = await scheduler.drain()
        assert (done.id, done.status) == (job_id, JobStatus.COMPLETED)
        assert scheduler.is_running


async def test_drain_times_out_on_a_job_that_never_ends(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = _app(make_scheduler, store)
    await scheduler.enqueue("forever", {})
    with pytest.raises(TimeoutError, match="still pending or running"):
        await scheduler.drain(timeout=0.5)
    assert not scheduler.is_running
