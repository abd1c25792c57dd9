"""A failing attempt gives its slot back before its failure is written, like a completing one
(issue 13 item 4): a slow `fail_job` must not hold the next job of a worker at concurrency 1."""

from __future__ import annotations

import asyncio

from tests.scheduler.conftest import FAST, Payload
from tests.waiting import eventually
from timecrisis import InMemoryJobStorage, JobContext, JobScheduler, JobStatus
from timecrisis.storage.base import FailOutcome, Failure


class SlowFailures(InMemoryJobStorage):
    """`fail_job` answers only once `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.failing = asyncio.Event()

    async def fail_job(self, failure: Failure) -> FailOutcome | None:
        self.failing.set()
        await self.release.wait()
        return await super().fail_job(failure)


async def test_the_next_job_runs_while_a_failure_is_still_being_written() -> None:
    store = SlowFailures()
    scheduler = JobScheduler(store, **{**FAST, "max_concurrent_jobs": 1, "prefetch": 0})
    ran: list[str] = []

    @scheduler.job("fails", concurrency=None, max_retries=0)
    async def fails(data: Payload, ctx: JobContext) -> None:
        raise RuntimeError("boom")

    @scheduler.job("works", concurrency=None)
    async def works(data: Payload, ctx: JobContext) -> None:
        ran.append(ctx.job_id)

    await scheduler.start()
    try:
        failing = await scheduler.enqueue("fails", {})
        await asyncio.wait_for(store.failing.wait(), 10)
        working = await scheduler.enqueue("works", {})

        # The failure write is still held: the one slot must be free anyway.
        async def worked() -> bool:
            return ran == [working]

        await eventually(worked, timeout=10)
        store.release.set()

        async def failed() -> bool:
            job = await scheduler.get_job(failing)
            return job is not None and job.status is JobStatus.FAILED

        await eventually(failed, timeout=10)
    finally:
        store.release.set()
        await scheduler.stop()
