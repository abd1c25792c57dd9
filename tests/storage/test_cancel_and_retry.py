"""Operator actions on one job: cancel it, or put a failed or canceled job back in the queue."""

from __future__ import annotations

import pytest

from tests.storage.factories import (
    BOOM,
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
from timecrisis.models import JobStatus, RunStatus
from timecrisis.storage.base import JobQuery, JobStorage

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


async def test_a_requested_cancel_shows_on_the_record_while_the_job_runs(
    storage: JobStorage,
) -> None:
    job_id = await insert_one(storage)
    assert (await get(storage, job_id)).cancel_requested is False
    claimed = await claim_one(storage)
    assert claimed.job.cancel_requested is False

    assert await storage.cancel_job(job_id) == "cancel_requested"
    asked = await get(storage, job_id)
    listed = await storage.list_jobs(JobQuery(status=JobStatus.RUNNING))
    assert asked.status is JobStatus.RUNNING and asked.cancel_requested is True
    assert [j.cancel_requested for j in listed if j.id == job_id] == [True]

    await complete(storage, claimed, canceled=True)  # the worker ends it canceled
    ended = await get(storage, job_id)
    assert ended.status is JobStatus.CANCELED and ended.cancel_requested is False


async def test_a_pending_job_canceled_at_once_shows_no_pending_request(
    storage: JobStorage,
) -> None:
    job_id = await insert_one(storage)
    assert await storage.cancel_job(job_id) == "canceled"
    assert (await get(storage, job_id)).cancel_requested is False


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


# ---- cancel is final (DESIGN §4) ---------------------------------------------------------------


async def test_releasing_a_cancel_requested_job_cancels_it_instead_of_requeueing_it(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage)
    claimed = await claim_one(storage)
    await storage.cancel_job(job_id)
    clock.advance(5)

    assert await storage.release_jobs([claimed.ref]) == [True]

    job = await get(storage, job_id)
    assert job.status is JobStatus.CANCELED
    assert job.finished_at == START + seconds(5)
    assert job.attempts == 1  # it ran: the attempt stays charged
    assert job.dead_lettered is False
    [run] = await storage.get_job_runs(job_id)
    assert run.status is RunStatus.RELEASED
    assert run.finished_at == START + seconds(5)
    clock.advance(60)
    assert await claim(storage) == []
    assert await storage.recover_expired_leases() == []


async def test_a_release_cancels_only_the_jobs_asked_to_stop(storage: JobStorage) -> None:
    kept, canceled = await insert_one(storage), await insert_one(storage)
    claims = await claim(storage)
    await storage.cancel_job(canceled)

    assert await storage.release_jobs([c.ref for c in claims]) == [True, True]

    assert (await get(storage, kept)).status is JobStatus.PENDING
    assert (await get(storage, kept)).attempts == 0
    assert (await get(storage, canceled)).status is JobStatus.CANCELED
    assert await claimed_ids(storage) == [kept]


async def test_lease_recovery_of_a_cancel_requested_job_cancels_it(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, max_retries=3)
    claimed = await claim_one(storage, lease_ttl=seconds(10))
    await storage.cancel_job(job_id)
    clock.advance(10)

    [outcome] = await storage.recover_expired_leases()

    assert outcome.will_retry is False
    assert outcome.job.status is JobStatus.CANCELED
    job = await get(storage, job_id)
    assert job.status is JobStatus.CANCELED
    assert job.dead_lettered is False
    assert job.finished_at == START + seconds(10)
    assert job.fail_reason is not None and "LeaseExpiredError" in job.fail_reason
    [run] = await storage.get_job_runs(job_id)
    assert run.status is RunStatus.FAILED
    assert await storage.list_jobs(JobQuery(dead_lettered=True)) == []
    clock.advance(3600)
    assert await claim(storage) == []
    assert await storage.release_jobs([claimed.ref]) == [False]  # the old claim is dead


async def test_a_handler_that_fails_after_a_cancel_request_ends_canceled_not_retried(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, max_retries=3, backoff_strategy="linear", retry_delay=1)
    claimed = await claim_one(storage)
    await storage.cancel_job(job_id)
    clock.advance(2)

    outcome = await fail(storage, claimed)

    assert outcome.will_retry is False
    assert outcome.job.status is JobStatus.CANCELED
    job = await get(storage, job_id)
    assert (job.status, job.dead_lettered, job.fail_reason) == (JobStatus.CANCELED, False, BOOM)
    assert job.finished_at == START + seconds(2)
    [run] = await storage.get_job_runs(job_id)
    assert (run.status, run.error) == (RunStatus.FAILED, BOOM)
    clock.advance(3600)
    assert await claim(storage) == []
    metrics = await storage.get_metrics()
    assert (metrics.canceled, metrics.failed, metrics.dead_letter) == (1, 0, 0)


async def test_a_non_retryable_failure_after_a_cancel_request_ends_canceled(
    storage: JobStorage,
) -> None:
    job_id = await insert_one(storage)
    claimed = await claim_one(storage)
    await storage.cancel_job(job_id)

    outcome = await fail(storage, claimed, retryable=False)

    assert outcome.job.status is JobStatus.CANCELED
    assert (await get(storage, job_id)).dead_lettered is False


async def test_a_retried_canceled_job_runs_again_without_the_old_request(
    storage: JobStorage,
) -> None:
    """`retry_job` is the one way back to pending; the new run starts with no cancel request."""
    job_id = await insert_one(storage)
    first = await claim_one(storage)
    await storage.cancel_job(job_id, terminate=True)
    await storage.release_jobs([first.ref])
    assert await storage.retry_job(job_id) is True

    second = await claim_one(storage)
    renewed = await storage.renew_claims([second.ref], seconds(30))
    assert renewed.cancel_requested == frozenset()
    assert renewed.terminate_requested == frozenset()
    assert await storage.release_jobs([second.ref]) == [True]
    assert (await get(storage, job_id)).status is JobStatus.PENDING


# ---- cancel with terminate ---------------------------------------------------------------------


async def test_a_terminate_request_is_reported_by_renew_claims(storage: JobStorage) -> None:
    polite, forced = await insert_one(storage), await insert_one(storage)
    claims = await claim(storage)
    assert await storage.cancel_job(polite) == "cancel_requested"
    assert await storage.cancel_job(forced, terminate=True) == "cancel_requested"

    renewed = await storage.renew_claims([c.ref for c in claims], seconds(30))

    assert renewed.cancel_requested == frozenset({polite, forced})
    assert renewed.terminate_requested == frozenset({forced})


async def test_a_later_cancel_without_terminate_keeps_the_terminate_request(
    storage: JobStorage,
) -> None:
    job_id = await insert_one(storage)
    claimed = await claim_one(storage)
    await storage.cancel_job(job_id, terminate=True)
    await storage.cancel_job(job_id)

    renewed = await storage.renew_claims([claimed.ref], seconds(30))
    assert renewed.terminate_requested == frozenset({job_id})


async def test_a_terminate_request_upgrades_a_plain_one(storage: JobStorage) -> None:
    job_id = await insert_one(storage)
    claimed = await claim_one(storage)
    await storage.cancel_job(job_id)
    assert (await storage.renew_claims([claimed.ref], seconds(30))).terminate_requested == set()

    await storage.cancel_job(job_id, terminate=True)
    assert (await storage.renew_claims([claimed.ref], seconds(30))).terminate_requested == {job_id}


async def test_terminate_on_a_pending_job_cancels_it_like_a_plain_cancel(
    storage: JobStorage,
) -> None:
    job_id = await insert_one(storage)

    assert await storage.cancel_job(job_id, terminate=True) == "canceled"

    assert (await get(storage, job_id)).status is JobStatus.CANCELED
    assert await claim(storage) == []


async def test_a_completed_terminated_job_ends_canceled(storage: JobStorage) -> None:
    job_id = await insert_one(storage)
    claimed = await claim_one(storage)
    await storage.cancel_job(job_id, terminate=True)

    await complete(storage, claimed, canceled=True)

    assert (await get(storage, job_id)).status is JobStatus.CANCELED


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
