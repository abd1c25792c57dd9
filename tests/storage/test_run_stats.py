"""`get_run_stats` (runs per type and status, retries, lease losses, a duration histogram) and
`count_finished_jobs` (finished jobs per status and time bucket): exact on every backend."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.storage.factories import (
    EMAIL,
    LEASE,
    REPORT,
    START,
    claim_one,
    complete,
    fail,
    insert_one,
)
from timecrisis.clock import ManualClock
from timecrisis.models import FailureKind, JobStatus, RunStatus
from timecrisis.storage.base import RUN_DURATION_BUCKETS, FinishedCount, JobStorage, RunStats

MINUTE = timedelta(minutes=1)


def _cumulative(*durations: float) -> tuple[int, ...]:
    return tuple(sum(1 for d in durations if d <= bound) for bound in RUN_DURATION_BUCKETS)


async def test_run_stats_of_an_empty_store_are_empty(storage: JobStorage) -> None:
    assert await storage.get_run_stats() == []


async def test_run_stats_count_runs_retries_lease_losses_and_durations_per_type_and_status(
    storage: JobStorage, clock: ManualClock
) -> None:
    email = {EMAIL: None}
    # email job 1: fails after 2 s, is retried (attempt 2) and completes after 0.5 s.
    await insert_one(storage, EMAIL, max_retries=3, backoff_strategy="linear", retry_delay=1)
    claimed = await claim_one(storage, types=email)
    clock.advance(2)
    await fail(storage, claimed)
    clock.advance(1)
    claimed = await claim_one(storage, types=email)
    clock.advance(0.5)
    await complete(storage, claimed)
    # email job 2: its worker goes silent; the reaper fails the attempt for a lost lease.
    await insert_one(storage, EMAIL)
    await claim_one(storage, types=email)
    clock.advance(LEASE)
    await storage.recover_expired_leases()
    # report: one run still running (no duration yet), one that took exactly 1 s (a bound).
    await insert_one(storage, REPORT)
    claimed = await claim_one(storage, types={REPORT: None})
    clock.advance(1)
    await complete(storage, claimed)
    await insert_one(storage, REPORT)
    await claim_one(storage, types={REPORT: None}, lease_ttl=timedelta(days=1))

    stats = await storage.get_run_stats()

    lease = LEASE.total_seconds()
    assert stats == [
        RunStats(EMAIL, RunStatus.COMPLETED, 1, 1, 0, 1, 0.5, _cumulative(0.5)),
        RunStats(
            EMAIL,
            RunStatus.FAILED,
            2,
            0,
            1,
            2,
            2 + lease,
            _cumulative(2, lease),
            ((FailureKind.ERROR, 1), (FailureKind.LEASE_EXPIRED, 1)),
        ),
        RunStats(REPORT, RunStatus.COMPLETED, 1, 0, 0, 1, 1.0, _cumulative(1.0)),
        RunStats(REPORT, RunStatus.RUNNING, 1, 0, 0, 0, 0.0, _cumulative()),
    ]


async def test_a_duration_above_every_bound_counts_in_the_sum_but_in_no_bucket(
    storage: JobStorage, clock: ManualClock
) -> None:
    await insert_one(storage)
    claimed = await claim_one(storage, lease_ttl=timedelta(days=1))
    clock.advance(RUN_DURATION_BUCKETS[-1] + 1)
    await complete(storage, claimed)

    [stats] = await storage.get_run_stats()

    assert stats.duration_count == 1
    assert stats.duration_sum == RUN_DURATION_BUCKETS[-1] + 1
    assert stats.duration_buckets == (0,) * len(RUN_DURATION_BUCKETS)


async def test_finished_jobs_are_counted_per_status_and_bucket_from_since(
    storage: JobStorage, clock: ManualClock
) -> None:
    async def finish(status: JobStatus) -> None:
        job_id = await insert_one(storage)
        if status is JobStatus.CANCELED:
            await storage.cancel_job(job_id)
            return
        claimed = await claim_one(storage)
        if status is JobStatus.COMPLETED:
            await complete(storage, claimed)
        else:
            await fail(storage, claimed, retryable=False)

    await finish(JobStatus.COMPLETED)  # at START: before `since`, not counted
    clock.advance(MINUTE)
    since = START + MINUTE  # the first bucket starts exactly here: included
    await finish(JobStatus.COMPLETED)
    await finish(JobStatus.FAILED)
    clock.advance(timedelta(seconds=59))  # still the first bucket
    await finish(JobStatus.COMPLETED)
    clock.advance(timedelta(minutes=2, seconds=1))  # bucket 3; buckets 1 and 2 stay empty
    await finish(JobStatus.CANCELED)
    await finish(JobStatus.COMPLETED)
    await insert_one(storage)  # pending: not finished, not counted

    counts = await storage.count_finished_jobs(since, MINUTE)

    assert counts == [
        FinishedCount(since, JobStatus.COMPLETED, 2),
        FinishedCount(since, JobStatus.FAILED, 1),
        FinishedCount(since + 3 * MINUTE, JobStatus.CANCELED, 1),
        FinishedCount(since + 3 * MINUTE, JobStatus.COMPLETED, 1),
    ]


async def test_counting_finished_jobs_refuses_a_bucket_that_is_not_positive(
    storage: JobStorage,
) -> None:
    with pytest.raises(ValueError, match="bucket"):
        await storage.count_finished_jobs(START, timedelta(0))
