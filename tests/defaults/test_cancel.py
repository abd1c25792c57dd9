"""Cancel is final (DESIGN §4), at the library's defaults, on every store: a canceled job never
goes back to pending, whatever ends its run, and `terminate=True` interrupts an async handler
at once."""

from __future__ import annotations

import asyncio
import time

from pydantic import BaseModel

from tests.defaults.conftest import DefaultSchedulerFactory
from tests.waiting import eventually
from timecrisis import JobContext, JobScheduler, JobStatus, JobStorage, RunStatus


class Work(BaseModel):
    n: int = 0


def _stubborn_worker(
    default_scheduler: DefaultSchedulerFactory, started: asyncio.Event, runs: list[str]
) -> JobScheduler:
    """A worker whose handler ignores `is_cancelled` and `is_shutting_down`: only a forced stop
    (or terminate) ends it."""
    scheduler = default_scheduler()

    @scheduler.job("stubborn", concurrency=None, max_retries=3)
    async def stubborn(data: Work, ctx: JobContext) -> None:
        runs.append(ctx.job_id)
        started.set()
        await asyncio.Event().wait()

    @scheduler.job("marker", concurrency=None)
    async def marker(data: Work, ctx: JobContext) -> None:
        return None

    return scheduler


async def test_a_canceled_running_job_ends_canceled_at_stop_and_never_runs_again(
    store: JobStorage, default_scheduler: DefaultSchedulerFactory
) -> None:
    started, runs = asyncio.Event(), list[str]()
    first = _stubborn_worker(default_scheduler, started, runs)
    await first.start()
    job_id = await first.enqueue("stubborn", {})
    await asyncio.wait_for(started.wait(), timeout=10)

    assert await first.cancel_job(job_id) is True
    await first.stop(force=True)  # the handler ignores the request: its run is given up

    job = await first.get_job(job_id)
    assert job is not None and job.status == JobStatus.CANCELED
    assert job.finished_at is not None

    # A worker that starts on the same store (a restart) finds nothing to run: a job enqueued
    # after it is claimed, and the canceled one, enqueued before, is not.
    restarted = _stubborn_worker(default_scheduler, asyncio.Event(), runs)
    await restarted.start()
    marker = await restarted.enqueue("marker", {})
    assert (await restarted.wait_for_job(marker, timeout=10)).status == JobStatus.COMPLETED
    await restarted.stop()

    assert runs == [job_id]
    job = await restarted.get_job(job_id)
    assert job is not None and (job.status, job.attempts) == (JobStatus.CANCELED, 1)
    assert [r.status for r in await restarted.get_job_runs(job_id)] == [RunStatus.RELEASED]


async def test_a_handler_that_raises_after_a_cancel_ends_canceled_not_retried(
    store: JobStorage, default_scheduler: DefaultSchedulerFactory
) -> None:
    """A graceful stop(): the handler ignores the cancel, then gives up when the worker stops,
    by raising. The job has retries left, yet it ends canceled."""
    scheduler = default_scheduler()
    started = asyncio.Event()

    @scheduler.job("quits-at-stop", concurrency=None, max_retries=3)
    async def quits_at_stop(data: Work, ctx: JobContext) -> None:
        started.set()
        while not ctx.is_shutting_down:
            await asyncio.sleep(0.02)
        raise RuntimeError("interrupted by the shutdown")

    await scheduler.start()
    job_id = await scheduler.enqueue("quits-at-stop", {})
    await asyncio.wait_for(started.wait(), timeout=10)
    assert await scheduler.cancel_job(job_id) is True
    await scheduler.stop()

    job = await scheduler.get_job(job_id)
    assert job is not None
    assert (job.status, job.dead_lettered, job.attempts) == (JobStatus.CANCELED, False, 1)
    [run] = await scheduler.get_job_runs(job_id)
    assert run.status == RunStatus.FAILED
    assert run.error == "RuntimeError: interrupted by the shutdown"


async def test_terminate_interrupts_an_async_handler_at_once(
    store: JobStorage, default_scheduler: DefaultSchedulerFactory
) -> None:
    scheduler = default_scheduler()
    started = asyncio.Event()
    interrupted: list[str] = []

    @scheduler.job("sleeper", concurrency=None, max_retries=3)
    async def sleeper(data: Work, ctx: JobContext) -> None:
        started.set()
        try:
            await asyncio.sleep(600)
        except asyncio.CancelledError:
            interrupted.append(ctx.job_id)
            raise

    async with scheduler:
        job_id = await scheduler.enqueue("sleeper", {})
        await asyncio.wait_for(started.wait(), timeout=10)
        began = time.monotonic()
        assert await scheduler.cancel_job(job_id, terminate=True) is True
        job = await scheduler.wait_for_job(job_id, timeout=10)
        took = time.monotonic() - began

        assert job.status == JobStatus.CANCELED
        assert took < 2.0, f"terminate took {took:.2f}s"
        assert interrupted == [job_id]
        runs = await scheduler.get_job_runs(job_id)
        assert [(r.attempt, r.status) for r in runs] == [(1, RunStatus.COMPLETED)]

        # The worker goes on: its slot was given back, and the job is not claimed again.
        after = await scheduler.enqueue("sleeper", {})
        await eventually(lambda: _is_running(scheduler, after))
        assert await scheduler.cancel_job(after, terminate=True) is True
        assert (await scheduler.wait_for_job(after, timeout=10)).status == JobStatus.CANCELED
    assert len(await scheduler.get_job_runs(job_id)) == 1


async def _is_running(scheduler: JobScheduler, job_id: str) -> bool:
    job = await scheduler.get_job(job_id)
    return job is not None and job.status == JobStatus.RUNNING
