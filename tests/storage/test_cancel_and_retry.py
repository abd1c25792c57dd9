"""Operator actions on one job: cancel it, or put a failed or canceled job back in the queue."""

from __future__ import annotations

import pytest

from tests.storage.factories import (
    START,
    claim,
    claim_one,
    claimed_ids,
    complete,
    fail,
    get,
    insert_one,
    new_job,
    seconds,
)
from timecrisis.clock import ManualClock
from timecrisis.models import JobStatus
from timecrisis.storage.base import JobStorage

# ---- cancel -----------------------------------------------------------------------------------


async def test_cancelling_a_pending_job_cancels_it_now(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage)
    clock.advance(5)

    assert await storage.cancel_job(job_id) == "canceled"

    job = await get(storage, job_id)
    assert job.status is JobStatus.CANCELED
    assert job.finished_at == START + seconds(5)
    assert await claim(storage) == []


async def test_cancelling_a_delayed_job_cancels_it(storage: JobStorage, clock: ManualClock) -> None:
    job_id = await insert_one(storage, delay=seconds(60))

    assert await storage.cancel_job(job_id) == "canceled"
    clock.advance(60)
    assert await claim(storage) == []


async def test_cancelling_a_running_job_requests_it_and_leaves_it_running(
    storage: JobStorage,
) -> None:
    job_id = await insert_one(storage)
    claimed = await claim_one(storage)

    assert await storage.cancel_job(job_id) == "cancel_requested"

    assert (await get(storage, job_id)).status is JobStatus.RUNNING
    renewed = await storage.renew_claims([claimed.ref], seconds(30))
    assert renewed.cancel_requested == frozenset({job_id})


async def test_cancelling_a_running_job_twice_requests_it_again(storage: JobStorage) -> None:
    job_id = await insert_one(storage)
    await claim_one(storage)

    assert await storage.cancel_job(job_id) == "cancel_requested"
    assert await storage.cancel_job(job_id) == "cancel_requested"


@pytest.mark.parametrize("ending", ["completed", "failed", "canceled"])
async def test_a_finished_job_is_not_cancellable(storage: JobStorage, ending: str) -> None:
    job_id = await insert_one(storage)
    if ending == "canceled":
        await storage.cancel_job(job_id)
    elif ending == "completed":
        await complete(storage, await claim_one(storage))
    else:
        await fail(storage, await claim_one(storage), retryable=False)
    before = await get(storage, job_id)

    assert await storage.cancel_job(job_id) == "not_cancellable"
    assert await get(storage, job_id) == before


async def test_cancelling_an_unknown_job_reports_not_found(storage: JobStorage) -> None:
    assert await storage.cancel_job("00000000-0000-0000-0000-000000000000") == "not_found"


# ---- retry_job --------------------------------------------------------------------------------


async def test_retrying_a_dead_lettered_job_puts_it_back_with_fresh_attempts(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, max_retries=1, backoff_strategy="linear", retry_delay=1)
    await fail(storage, await claim_one(storage))
    clock.advance(1)
    await fail(storage, await claim_one(storage))
    clock.advance(100)

    assert await storage.retry_job(job_id) is True

    job = await get(storage, job_id)
    assert job.status is JobStatus.PENDING
    assert job.attempts == 0
    assert job.dead_lettered is False
    assert job.fail_reason is None
    assert job.finished_at is None
    assert job.run_at == START + seconds(101)
    assert len(await storage.get_job_runs(job_id)) == 2  # its history stays


async def test_a_retried_job_runs_its_full_set_of_attempts_again(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, max_retries=1, backoff_strategy="linear", retry_delay=1)
    await fail(storage, await claim_one(storage), retryable=False)
    await storage.retry_job(job_id)

    first = await claim_one(storage)
    assert first.job.attempts == 1
    assert (await fail(storage, first)).will_retry is True
    clock.advance(1)
    assert (await claim_one(storage)).job.attempts == 2
    runs = await storage.get_job_runs(job_id)
    assert [run.attempt for run in runs] == [1, 1, 2]


async def test_retrying_a_canceled_job_puts_it_back_in_the_queue(storage: JobStorage) -> None:
    job_id = await insert_one(storage)
    await storage.cancel_job(job_id)

    assert await storage.retry_job(job_id) is True

    assert (await get(storage, job_id)).status is JobStatus.PENDING
    assert await claimed_ids(storage) == [job_id]


async def test_retrying_an_expired_job_puts_it_back_to_pending(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, expires_at=START + seconds(10))
    clock.advance(10)
    [expired] = await storage.expire_jobs()
    assert expired.id == job_id

    assert await storage.retry_job(job_id) is True

    assert (await get(storage, job_id)).status is JobStatus.PENDING


@pytest.mark.parametrize("state", ["pending", "running", "completed"])
async def test_retrying_a_job_that_is_not_failed_or_canceled_changes_nothing(
    storage: JobStorage, state: str
) -> None:
    job_id = await insert_one(storage)
    if state != "pending":
        claimed = await claim_one(storage)
        if state == "completed":
            await complete(storage, claimed)
    before = await get(storage, job_id)

    assert await storage.retry_job(job_id) is False
    assert await get(storage, job_id) == before


async def test_retrying_an_unknown_job_returns_false(storage: JobStorage) -> None:
    assert await storage.retry_job("00000000-0000-0000-0000-000000000000") is False


async def test_a_retried_job_holds_its_unique_key_again(storage: JobStorage) -> None:
    job_id = await insert_one(storage, unique_key="k")
    await storage.cancel_job(job_id)
    await storage.retry_job(job_id)

    [result] = await storage.insert_jobs([new_job(unique_key="k")])

    assert (result.id, result.created) == (job_id, False)
