"""`get_metrics`: exact counts per status and type, dead letters, and the average duration."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.storage.factories import (
    EMAIL,
    REPORT,
    claim_one,
    complete,
    fail,
    insert,
    insert_one,
    new_job,
    seconds,
)
from timecrisis.clock import ManualClock
from timecrisis.models import Metrics, TypeMetrics
from timecrisis.storage.base import JobStorage, PurgeParams


async def test_metrics_of_an_empty_store_are_zero(storage: JobStorage) -> None:
    assert await storage.get_metrics() == Metrics()


async def _fixture(storage: JobStorage, clock: ManualClock) -> None:
    """email: 2 completed (2 s and 4 s), 1 failed for good, 1 retrying (pending), 1 running,
    1 canceled, 1 pending. report: 1 completed (6 s), 1 failed for good, 1 pending."""
    email = {EMAIL: None}
    report = {REPORT: None}
    for duration in (2, 4):
        await insert_one(storage, EMAIL)
        claimed = await claim_one(storage, types=email)
        clock.advance(duration)
        await complete(storage, claimed)
    await insert_one(storage, EMAIL)
    await fail(storage, await claim_one(storage, types=email), retryable=False)
    await insert_one(storage, EMAIL, max_retries=2, backoff_strategy="linear", retry_delay=3600)
    await fail(storage, await claim_one(storage, types=email))  # pending again, retries later
    await insert_one(storage, EMAIL)
    await claim_one(storage, types=email, lease_ttl=timedelta(days=1))
    await storage.cancel_job(await insert_one(storage, EMAIL))
    await insert_one(storage, EMAIL, delay=seconds(600))

    await insert_one(storage, REPORT)
    claimed = await claim_one(storage, types=report)
    clock.advance(6)
    await complete(storage, claimed)
    await insert_one(storage, REPORT)
    await fail(storage, await claim_one(storage, types=report), retryable=False)
    await insert_one(storage, REPORT, delay=seconds(600))


async def test_metrics_count_every_status_per_type_and_overall(
    storage: JobStorage, clock: ManualClock
) -> None:
    await _fixture(storage, clock)

    metrics = await storage.get_metrics()

    assert metrics.types[EMAIL].model_dump(exclude={"average_duration"}) == {
        "running": 1,
        "pending": 2,
        "completed": 2,
        "failed": 1,
        "canceled": 1,
        "dead_letter": 1,
    }
    assert metrics.types[REPORT].model_dump(exclude={"average_duration"}) == {
        "running": 0,
        "pending": 1,
        "completed": 1,
        "failed": 1,
        "canceled": 0,
        "dead_letter": 1,
    }
    assert metrics.model_dump(exclude={"average_duration", "types", "queues"}) == {
        "running": 1,
        "pending": 3,
        "completed": 3,
        "failed": 2,
        "canceled": 1,
        "dead_letter": 2,
    }
    assert set(metrics.types) == {EMAIL, REPORT}


async def test_metrics_average_the_duration_of_completed_runs_only(
    storage: JobStorage, clock: ManualClock
) -> None:
    await _fixture(storage, clock)

    metrics = await storage.get_metrics()

    assert metrics.types[EMAIL].average_duration == pytest.approx(3.0)
    assert metrics.types[REPORT].average_duration == pytest.approx(6.0)
    assert metrics.average_duration == pytest.approx(4.0)


async def test_a_type_without_completed_runs_has_no_average(storage: JobStorage) -> None:
    await insert_one(storage)

    metrics = await storage.get_metrics()

    assert metrics.average_duration is None
    assert metrics.types[EMAIL] == TypeMetrics(pending=1)


async def test_a_job_that_expired_counts_as_a_dead_letter(
    storage: JobStorage, clock: ManualClock
) -> None:
    await insert_one(storage, expires_in=seconds(1))
    clock.advance(1)
    await storage.expire_jobs()

    metrics = await storage.get_metrics()

    assert (metrics.failed, metrics.dead_letter, metrics.pending) == (1, 1, 0)


async def test_a_retried_dead_letter_leaves_the_dead_letter_count(storage: JobStorage) -> None:
    job_id = await insert_one(storage)
    await fail(storage, await claim_one(storage), retryable=False)

    await storage.retry_job(job_id)

    metrics = await storage.get_metrics()
    assert (metrics.pending, metrics.failed, metrics.dead_letter) == (1, 0, 0)


async def test_purged_jobs_leave_the_metrics(storage: JobStorage, clock: ManualClock) -> None:
    await insert(storage, new_job(), new_job(REPORT))
    claimed = await claim_one(storage, types={EMAIL: None})
    clock.advance(2)
    await complete(storage, claimed)
    clock.advance(1)

    await storage.purge_jobs(PurgeParams())

    metrics = await storage.get_metrics()
    assert metrics.completed == 0
    assert metrics.average_duration is None
    assert set(metrics.types) == {REPORT}
