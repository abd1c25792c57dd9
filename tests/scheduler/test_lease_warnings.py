""" "lost the lease of job X" is logged for real losses only (issue 11, item 8).

A completion or failure write ends the lease (the store clears the run's token). A renewal in
flight at that moment (the renew loop runs beside the writes, on another connection) can
answer after the write committed but before the write's own answer arrives: it then finds the
token gone. That is no loss: the job ended normally. These stores replay exactly that order,
deterministically: right after the write commits, the worker's renewal runs and answers,
then the write returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime

import pytest

from tests.scheduler.conftest import Payload, SchedulerFactory
from timecrisis import InMemoryJobStorage, JobContext, JobScheduler, JobStatus
from timecrisis.storage.base import ClaimRef, Completion, FailOutcome, Failure, RenewResult

LOST = "lost the lease"


class RenewalRacesTheWrite(InMemoryJobStorage):
    """After each completion or failure commits, the worker renews everything it holds (the
    job just written included) before the write's answer comes back."""

    def __init__(self) -> None:
        super().__init__()
        self.scheduler: JobScheduler | None = None
        self.raced = 0

    async def _renew_now(self) -> None:
        assert self.scheduler is not None
        processor = self.scheduler._processor
        assert processor is not None
        held = list(processor.running.values())
        if held:
            self.raced += 1
            await processor.renew(held)

    async def complete_jobs(self, completions: Sequence[Completion]) -> list[datetime | None]:
        results = await super().complete_jobs(completions)
        await self._renew_now()
        return results

    async def fail_job(self, failure: Failure) -> FailOutcome | None:
        outcome = await super().fail_job(failure)
        await self._renew_now()
        return outcome


def _lost_lease_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if LOST in r.getMessage()]


async def test_a_renewal_racing_a_completion_or_a_failure_does_not_warn(
    make_scheduler: SchedulerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="timecrisis")
    store = RenewalRacesTheWrite()
    failures: list[str] = []
    scheduler = make_scheduler(
        store, worker="racer", on_job_failed=lambda job, error: failures.append(job.id)
    )
    store.scheduler = scheduler

    @scheduler.job("ok", concurrency=None)
    async def ok(data: Payload, ctx: JobContext) -> int:
        return data.n

    @scheduler.job("boom", concurrency=None, max_retries=1, retry_delay="10ms")
    async def boom(data: Payload, ctx: JobContext) -> None:
        raise RuntimeError(f"boom {data.n}")

    await scheduler.start()
    oks = await scheduler.enqueue_many("ok", [{"n": n} for n in range(10)])
    booms = await scheduler.enqueue_many("boom", [{"n": n} for n in range(3)])
    for job_id in oks:
        job = await scheduler.wait_for_job(job_id, timeout=10)
        assert job.status == JobStatus.COMPLETED
    for job_id in booms:
        job = await scheduler.wait_for_job(job_id, timeout=10)
        assert (job.status, job.attempts) == (JobStatus.FAILED, 2)

    assert store.raced > 0  # the race really happened
    assert _lost_lease_warnings(caplog) == []
    # Every failed attempt was recorded and reported, none abandoned as "lost":
    assert sorted(failures) == sorted(booms * 2)


class RenewalsRefused(InMemoryJobStorage):
    """Renewals find every lease gone, as after another worker took the job over."""

    async def renew_claims(self, refs: Sequence[ClaimRef], lease_ttl: object) -> RenewResult:
        return RenewResult(valid=frozenset(), cancel_requested=frozenset())


async def test_a_real_loss_still_warns_and_stops_the_run(
    make_scheduler: SchedulerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="timecrisis")
    store = RenewalsRefused()
    scheduler = make_scheduler(store, worker="loser")
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @scheduler.job("long", concurrency=None)
    async def long(data: Payload, ctx: JobContext) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await scheduler.start()
    job_id = await scheduler.enqueue("long", {})
    await asyncio.wait_for(started.wait(), 10)
    processor = scheduler._processor
    assert processor is not None
    await processor.renew(list(processor.running.values()))
    await asyncio.wait_for(cancelled.wait(), 5)
    warnings = _lost_lease_warnings(caplog)
    assert any(f"job {job_id} (long)" in w for w in warnings), warnings
