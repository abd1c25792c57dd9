"""The end of a claim: complete, fail (retry or dead letter), release, and lease renewal."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.storage.factories import (
    BOOM,
    LEASE,
    START,
    claim,
    claim_one,
    claimed_ids,
    complete,
    fail,
    get,
    insert,
    insert_one,
    new_job,
    seconds,
)
from timecrisis.clock import ManualClock
from timecrisis.models import JobStatus, RunStatus
from timecrisis.storage.base import ClaimRef, Completion, JobStorage

# ---- complete ---------------------------------------------------------------------------------


async def test_completion_finishes_the_job_with_its_result(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage)
    claimed = await claim_one(storage)
    clock.advance(3)

    finished_at = await complete(storage, claimed, {"sent": 1})

    job = await get(storage, job_id)
    assert finished_at == START + seconds(3)
    assert job.status is JobStatus.COMPLETED
    assert job.finished_at == finished_at
    assert job.progress == 100
    assert job.result == {"sent": 1}
    assert job.dead_lettered is False
    assert job.attempts == 1


async def test_completion_closes_the_run_with_its_duration(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage)
    claimed = await claim_one(storage)
    clock.advance(2.5)

    await complete(storage, claimed)

    [run] = await storage.get_job_runs(job_id)
    assert run.status is RunStatus.COMPLETED
    assert run.finished_at == START + seconds(2.5)
    assert run.duration == pytest.approx(2.5)
    assert run.progress == 100
    assert run.error is None


async def test_completion_as_canceled_ends_the_job_canceled_and_the_run_completed(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage)
    claimed = await claim_one(storage)
    assert await storage.cancel_job(job_id) == "cancel_requested"
    clock.advance(1)

    await complete(storage, claimed, {"partial": True}, canceled=True)

    job = await get(storage, job_id)
    assert job.status is JobStatus.CANCELED
    assert job.finished_at == START + seconds(1)
    assert job.result == {"partial": True}
    [run] = await storage.get_job_runs(job_id)
    assert run.status is RunStatus.COMPLETED
    assert run.duration == pytest.approx(1.0)


async def test_one_call_completes_several_jobs_and_reports_stale_ones(
    storage: JobStorage,
) -> None:
    ids = await insert(storage, new_job(), new_job(), new_job())
    first, second, third = await claim(storage)
    stale = ClaimRef(second.job.id, "stale-token", second.run_id)

    results = await storage.complete_jobs(
        [Completion(first.ref, 1), Completion(stale), Completion(third.ref, 3)]
    )

    assert results == [START, None, START]
    statuses = [(await get(storage, job_id)).status for job_id in ids]
    assert statuses == [JobStatus.COMPLETED, JobStatus.RUNNING, JobStatus.COMPLETED]


async def test_a_completed_job_is_never_claimed_again(storage: JobStorage) -> None:
    await insert_one(storage)
    await complete(storage, await claim_one(storage))

    assert await claim(storage) == []


# ---- fail: retry with backoff -----------------------------------------------------------------


async def test_a_failed_attempt_with_retries_left_goes_back_to_pending(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, max_retries=2, backoff_strategy="linear", retry_delay=30)
    claimed = await claim_one(storage)
    clock.advance(4)

    outcome = await fail(storage, claimed, "ValueError: bad input")

    assert outcome.will_retry is True
    assert outcome.error == "ValueError: bad input"
    job = await get(storage, job_id)
    assert outcome.job == job
    assert job.status is JobStatus.PENDING
    assert job.attempts == 1
    assert job.fail_reason == "ValueError: bad input"
    assert job.run_at == START + seconds(4 + 30)
    assert job.finished_at is None
    assert job.dead_lettered is False


async def test_a_failed_attempt_closes_its_run_with_the_error(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, max_retries=1)
    claimed = await claim_one(storage)
    clock.advance(1.5)

    await fail(storage, claimed, "KeyError: 'x'")

    [run] = await storage.get_job_runs(job_id)
    assert run.status is RunStatus.FAILED
    assert run.error == "KeyError: 'x'"
    assert run.finished_at == START + seconds(1.5)
    assert run.duration == pytest.approx(1.5)


@pytest.mark.parametrize(("failed_attempt", "base"), [(1, 10.0), (2, 20.0), (3, 40.0), (4, 80.0)])
async def test_exponential_backoff_waits_the_doubled_delay_plus_at_most_ten_percent(
    storage: JobStorage, clock: ManualClock, failed_attempt: int, base: float
) -> None:
    job_id = await insert_one(storage, max_retries=10, retry_delay=10)
    for _ in range(failed_attempt - 1):  # earlier attempts, each retried when due
        await fail(storage, await claim_one(storage))
        clock.set((await get(storage, job_id)).run_at)
    failed_at = await storage.now()

    await fail(storage, await claim_one(storage))

    waited = ((await get(storage, job_id)).run_at - failed_at).total_seconds()
    assert base <= waited <= base * 1.1 + 1e-5


@pytest.mark.parametrize("failed_attempt", [1, 2, 3])
async def test_linear_backoff_waits_exactly_the_retry_delay(
    storage: JobStorage, clock: ManualClock, failed_attempt: int
) -> None:
    job_id = await insert_one(storage, max_retries=5, backoff_strategy="linear", retry_delay=7)
    for _ in range(failed_attempt - 1):
        await fail(storage, await claim_one(storage))
        clock.advance(7)
    failed_at = await storage.now()

    await fail(storage, await claim_one(storage))

    assert (await get(storage, job_id)).run_at == failed_at + seconds(7)


async def test_backoff_is_capped_at_the_max_retry_delay(storage: JobStorage) -> None:
    job_id = await insert_one(storage, max_retries=1, retry_delay=1000, max_retry_delay=60)

    await fail(storage, await claim_one(storage))

    assert (await get(storage, job_id)).run_at == START + seconds(60)


async def test_a_retried_job_is_not_claimable_before_its_backoff_ends(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, max_retries=1, backoff_strategy="linear", retry_delay=10)
    await fail(storage, await claim_one(storage))

    clock.advance(9)
    assert await claim(storage) == []
    clock.advance(1)
    assert await claimed_ids(storage) == [job_id]


# ---- fail: dead letter ------------------------------------------------------------------------


@pytest.mark.parametrize("max_retries", [0, 1, 3])
async def test_max_retries_n_allows_n_plus_one_attempts_then_dead_letters(
    storage: JobStorage, clock: ManualClock, max_retries: int
) -> None:
    job_id = await insert_one(
        storage, max_retries=max_retries, backoff_strategy="linear", retry_delay=1
    )
    outcomes = []
    for _ in range(max_retries + 1):
        outcomes.append(await fail(storage, await claim_one(storage)))
        clock.advance(1)

    assert [o.will_retry for o in outcomes] == [True] * max_retries + [False]
    job = await get(storage, job_id)
    assert job.status is JobStatus.FAILED
    assert job.dead_lettered is True
    assert job.attempts == max_retries + 1
    assert job.finished_at == START + seconds(max_retries)
    assert job.fail_reason == BOOM
    assert len(await storage.get_job_runs(job_id)) == max_retries + 1
    assert await claim(storage) == []


async def test_a_non_retryable_failure_dead_letters_whatever_retries_are_left(
    storage: JobStorage,
) -> None:
    job_id = await insert_one(storage, max_retries=5)

    outcome = await fail(
        storage, await claim_one(storage), "NonRetryableError: no", retryable=False
    )

    assert outcome.will_retry is False
    job = await get(storage, job_id)
    assert (job.status, job.dead_lettered, job.attempts) == (JobStatus.FAILED, True, 1)
    assert job.fail_reason == "NonRetryableError: no"
    assert job.finished_at == START


async def test_a_retry_that_would_start_after_expiry_dead_letters_the_job(
    storage: JobStorage,
) -> None:
    job_id = await insert_one(
        storage,
        max_retries=3,
        backoff_strategy="linear",
        retry_delay=60,
        expires_in=seconds(30),
    )

    outcome = await fail(storage, await claim_one(storage))

    assert outcome.will_retry is False
    job = await get(storage, job_id)
    assert (job.status, job.dead_lettered) == (JobStatus.FAILED, True)
    assert job.fail_reason is not None
    assert job.fail_reason.startswith(BOOM)
    assert job.finished_at == START


async def test_a_retry_that_starts_before_expiry_is_scheduled(storage: JobStorage) -> None:
    job_id = await insert_one(
        storage, max_retries=1, backoff_strategy="linear", retry_delay=10, expires_in=seconds(11)
    )

    outcome = await fail(storage, await claim_one(storage))

    assert outcome.will_retry is True
    assert (await get(storage, job_id)).status is JobStatus.PENDING


# ---- release ----------------------------------------------------------------------------------


async def test_release_gives_the_job_and_its_attempt_back(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, run_at=START - seconds(100))
    claimed = await claim_one(storage)
    clock.advance(2)

    assert await storage.release_jobs([claimed.ref]) == [True]

    job = await get(storage, job_id)
    assert job.status is JobStatus.PENDING
    assert job.attempts == 0
    assert job.run_at == START - seconds(100)
    assert job.finished_at is None
    [run] = await storage.get_job_runs(job_id)
    assert run.status is RunStatus.RELEASED


async def test_a_released_job_is_claimed_again_with_the_same_attempt_number(
    storage: JobStorage,
) -> None:
    job_id = await insert_one(storage)
    await storage.release_jobs([(await claim_one(storage)).ref])

    again = await claim_one(storage, worker="worker-2")

    assert again.job.attempts == 1
    runs = await storage.get_job_runs(job_id)
    assert [(r.attempt, r.status) for r in runs] == [
        (1, RunStatus.RELEASED),
        (1, RunStatus.RUNNING),
    ]


async def test_release_keeps_the_jobs_place_in_the_queue(storage: JobStorage) -> None:
    first = await insert_one(storage)
    second = await insert_one(storage)
    claimed = await claim_one(storage)

    await storage.release_jobs([claimed.ref])

    assert await claimed_ids(storage) == [first, second]


async def test_release_reports_each_ref_and_skips_stale_ones(storage: JobStorage) -> None:
    await insert(storage, new_job(), new_job())
    first, second = await claim(storage)
    stale = ClaimRef(second.job.id, "stale", second.run_id)

    assert await storage.release_jobs([first.ref, stale]) == [True, False]
    assert (await get(storage, second.job.id)).status is JobStatus.RUNNING


# ---- renew ------------------------------------------------------------------------------------


async def test_renew_extends_the_lease_from_now(storage: JobStorage, clock: ManualClock) -> None:
    job_id = await insert_one(storage, max_retries=1)
    claimed = await claim_one(storage, lease_ttl=seconds(30))
    clock.advance(20)

    result = await storage.renew_claims([claimed.ref], timedelta(seconds=30))

    assert result.valid == frozenset({job_id})
    assert result.cancel_requested == frozenset()
    clock.advance(29)  # 49 s after the claim: past the first lease, inside the renewed one
    assert await storage.recover_expired_leases() == []
    clock.advance(1)
    [recovered] = await storage.recover_expired_leases()
    assert recovered.job.id == job_id


async def test_renew_reports_which_refs_are_valid(storage: JobStorage) -> None:
    await insert(storage, new_job(), new_job())
    first, second = await claim(storage)
    stale = ClaimRef(second.job.id, "stale", second.run_id)

    result = await storage.renew_claims([first.ref, stale], LEASE)

    assert result.valid == frozenset({first.job.id})


async def test_renew_reports_a_cancel_request(storage: JobStorage) -> None:
    await insert(storage, new_job(), new_job())
    first, second = await claim(storage)
    assert await storage.cancel_job(second.job.id) == "cancel_requested"

    result = await storage.renew_claims([first.ref, second.ref], LEASE)

    assert result.valid == frozenset({first.job.id, second.job.id})
    assert result.cancel_requested == frozenset({second.job.id})


async def test_renew_of_nothing_is_empty(storage: JobStorage) -> None:
    result = await storage.renew_claims([], LEASE)

    assert (result.valid, result.cancel_requested) == (frozenset(), frozenset())


async def test_a_new_claim_starts_without_the_previous_attempts_cancel_request(
    storage: JobStorage,
) -> None:
    job_id = await insert_one(storage)
    first = await claim_one(storage)
    assert await storage.cancel_job(job_id) == "cancel_requested"
    assert await storage.release_jobs([first.ref]) == [True]  # cancel is final: canceled now
    assert await storage.retry_job(job_id) is True  # the one way back

    second = await claim_one(storage)

    result = await storage.renew_claims([second.ref], LEASE)
    assert result.cancel_requested == frozenset()
