"""Sync handlers that overrun their timeout, at the library's defaults (DESIGN §1 "Attempts and
retries": the attempt fails, the thread is abandoned). An abandoned thread must not cost the
worker a slot: with `max_concurrent_jobs=2` and two hung handlers, a healthy sync job still
runs, and its timeout counts from its own start."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
from pydantic import BaseModel

from tests.defaults.conftest import DefaultSchedulerFactory
from tests.waiting import eventually
from timecrisis import JobContext, JobStatus, JobStorage

HANG_TIMEOUT = "300ms"
HEALTHY_SECONDS = 0.6  # longer than the hung jobs' timeout: it must not run on their clock
HEALTHY_TIMEOUT = "2s"


class Empty(BaseModel):
    pass


async def test_hung_sync_handlers_do_not_starve_a_healthy_one(
    store: JobStorage,
    default_scheduler: DefaultSchedulerFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="timecrisis")
    release = threading.Event()
    healthy_ran = threading.Event()
    scheduler = default_scheduler(max_concurrent_jobs=2)

    @scheduler.job("hang", concurrency=None, timeout=HANG_TIMEOUT)
    def hang(data: Empty, ctx: JobContext) -> None:
        release.wait(30)  # far past its timeout; the test lets it go at the end

    @scheduler.job("healthy", concurrency=None, timeout=HEALTHY_TIMEOUT)
    def healthy(data: Empty, ctx: JobContext) -> str:
        healthy_ran.set()
        time.sleep(HEALTHY_SECONDS)
        return "done"

    try:
        await scheduler.start()
        hung = await scheduler.enqueue_many("hang", [{}, {}])
        for job_id in hung:
            job = await scheduler.wait_for_job(job_id, timeout=10)
            assert job.status == JobStatus.FAILED
            assert "exceeded its timeout of 300ms" in (job.fail_reason or "")
        # Both threads are still inside their handlers: a fixed pool of two would be full.
        good = await scheduler.enqueue("healthy", {})
        job = await scheduler.wait_for_job(good, timeout=10)
        assert (job.status, job.result) == (JobStatus.COMPLETED, "done"), job.fail_reason
        assert healthy_ran.is_set()

        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        abandoned = [m for m in warnings if "its thread is abandoned and still running" in m]
        assert len(abandoned) == 2, warnings
        for job_id in hung:
            assert any(m.startswith(f"job {job_id} (hang): ") for m in abandoned), abandoned
        assert any("(2 abandoned thread(s) now)" in m for m in abandoned), abandoned
    finally:
        release.set()

    async def threads_returned() -> bool:
        return any(
            "abandoned thread returned" in r.getMessage()
            and "(0 abandoned thread(s) left)" in r.getMessage()
            for r in caplog.records
        )

    await eventually(threads_returned, timeout=10)


async def test_a_stop_does_not_wait_for_an_abandoned_thread(
    store: JobStorage, default_scheduler: DefaultSchedulerFactory
) -> None:
    release = threading.Event()
    scheduler = default_scheduler(max_concurrent_jobs=1)

    @scheduler.job("hang", concurrency=None, timeout=HANG_TIMEOUT)
    def hang(data: Empty, ctx: JobContext) -> None:
        release.wait(30)

    try:
        await scheduler.start()
        job_id = await scheduler.enqueue("hang", {})
        job = await scheduler.wait_for_job(job_id, timeout=10)
        assert job.status == JobStatus.FAILED
        began = time.monotonic()
        async with asyncio.timeout(10):
            await scheduler.stop()
        assert time.monotonic() - began < 2.0
    finally:
        release.set()
