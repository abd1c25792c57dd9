"""Fencing: once a claim's token is stale, nothing it presents changes the job."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from tests.storage.factories import LEASE, claim_one, complete, fail, get, insert_one, seconds
from timecrisis.clock import ManualClock
from timecrisis.models import Job, JobRun, JobStatus
from timecrisis.storage.base import (
    ClaimedJob,
    ClaimRef,
    Completion,
    Failure,
    JobStorage,
)


@dataclass(frozen=True)
class StaleAttempt:
    """One use of a stale token, and whether the store reported it as refused."""

    name: str
    act: Callable[[JobStorage, ClaimRef], Awaitable[bool]]


async def _complete(storage: JobStorage, ref: ClaimRef) -> bool:
    return (await storage.complete_jobs([Completion(ref, {"done": True})])) != [None]


async def _cancel_complete(storage: JobStorage, ref: ClaimRef) -> bool:
    return (await storage.complete_jobs([Completion(ref, canceled=True)])) != [None]


async def _fail(storage: JobStorage, ref: ClaimRef) -> bool:
    return await storage.fail_job(Failure(ref, "RuntimeError: late")) is not None


async def _fail_for_good(storage: JobStorage, ref: ClaimRef) -> bool:
    return await storage.fail_job(Failure(ref, "RuntimeError: late", retryable=False)) is not None


async def _release(storage: JobStorage, ref: ClaimRef) -> bool:
    return (await storage.release_jobs([ref])) != [False]


async def _renew(storage: JobStorage, ref: ClaimRef) -> bool:
    return ref.job_id in (await storage.renew_claims([ref], LEASE)).valid


async def _progress(storage: JobStorage, ref: ClaimRef) -> bool:
    return await storage.update_progress(ref, 42)


STALE_ATTEMPTS = [
    StaleAttempt("complete", _complete),
    StaleAttempt("complete-as-canceled", _cancel_complete),
    StaleAttempt("fail", _fail),
    StaleAttempt("fail-non-retryable", _fail_for_good),
    StaleAttempt("release", _release),
    StaleAttempt("renew", _renew),
    StaleAttempt("update-progress", _progress),
]


async def _state(storage: JobStorage, job_id: str) -> tuple[Job, list[JobRun]]:
    return await get(storage, job_id), await storage.get_job_runs(job_id)


@pytest.mark.parametrize("attempt", STALE_ATTEMPTS, ids=[a.name for a in STALE_ATTEMPTS])
async def test_the_old_token_changes_nothing_after_another_worker_took_the_job_over(
    storage: JobStorage, clock: ManualClock, attempt: StaleAttempt
) -> None:
    job_id = await insert_one(storage, max_retries=3, backoff_strategy="linear", retry_delay=1)
    old = await claim_one(storage, worker="worker-1")
    clock.advance(LEASE)  # worker-1 went silent: its lease runs out
    [recovered] = await storage.recover_expired_leases()
    assert recovered.job.id == job_id
    clock.advance(1)
    new = await claim_one(storage, worker="worker-2")
    before = await _state(storage, job_id)

    refused = not await attempt.act(storage, old.ref)

    assert refused
    assert await _state(storage, job_id) == before
    job, runs = before
    assert (job.status, job.worker, job.attempts) == (JobStatus.RUNNING, "worker-2", 2)
    assert runs[-1].id == new.run_id
    # The new holder is unaffected and can still finish the job.
    await complete(storage, new, "ok")
    assert (await get(storage, job_id)).status is JobStatus.COMPLETED


@pytest.mark.parametrize("attempt", STALE_ATTEMPTS, ids=[a.name for a in STALE_ATTEMPTS])
async def test_a_made_up_token_changes_nothing(storage: JobStorage, attempt: StaleAttempt) -> None:
    job_id = await insert_one(storage)
    claimed = await claim_one(storage)
    before = await _state(storage, job_id)

    forged = ClaimRef(job_id, "not-the-token", claimed.run_id)

    assert not await attempt.act(storage, forged)
    assert await _state(storage, job_id) == before


@pytest.mark.parametrize("attempt", STALE_ATTEMPTS, ids=[a.name for a in STALE_ATTEMPTS])
async def test_the_token_of_a_finished_job_changes_nothing(
    storage: JobStorage, attempt: StaleAttempt
) -> None:
    job_id = await insert_one(storage)
    claimed = await claim_one(storage)
    await complete(storage, claimed, "first")
    before = await _state(storage, job_id)

    assert not await attempt.act(storage, claimed.ref)
    assert await _state(storage, job_id) == before


async def test_a_released_claims_token_is_stale(storage: JobStorage) -> None:
    job_id = await insert_one(storage)
    claimed = await claim_one(storage)
    assert await storage.release_jobs([claimed.ref]) == [True]

    assert await storage.complete_jobs([Completion(claimed.ref)]) == [None]
    assert (await get(storage, job_id)).status is JobStatus.PENDING


async def test_a_token_refers_to_its_own_job_only(storage: JobStorage) -> None:
    await insert_one(storage)
    other_id = await insert_one(storage)
    first = await claim_one(storage)
    await claim_one(storage)

    borrowed = ClaimRef(other_id, first.token, first.run_id)

    assert await storage.fail_job(Failure(borrowed, "RuntimeError: wrong job")) is None
    assert (await get(storage, other_id)).status is JobStatus.RUNNING


async def test_recovery_kills_the_old_token_even_before_anyone_reclaims(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, max_retries=1)
    old: ClaimedJob = await claim_one(storage)
    clock.advance(LEASE + seconds(1))
    await storage.recover_expired_leases()

    assert await storage.complete_jobs([Completion(old.ref)]) == [None]
    assert await storage.update_progress(old.ref, 10) is False
    assert (await get(storage, job_id)).status is JobStatus.PENDING


async def test_an_expired_lease_that_was_not_recovered_yet_still_accepts_its_token(
    storage: JobStorage, clock: ManualClock
) -> None:
    # Until the reaper acts, the late worker still owns the job: completing is better than
    # running it twice.
    job_id = await insert_one(storage)
    claimed = await claim_one(storage)
    clock.advance(LEASE * 2)

    await complete(storage, claimed)

    assert (await get(storage, job_id)).status is JobStatus.COMPLETED
    assert await storage.recover_expired_leases() == []


async def test_completing_twice_in_one_call_succeeds_once(storage: JobStorage) -> None:
    await insert_one(storage)
    claimed = await claim_one(storage)

    results = await storage.complete_jobs([Completion(claimed.ref), Completion(claimed.ref)])

    assert results[0] is not None
    assert results[1] is None


async def test_fail_after_complete_is_refused(storage: JobStorage) -> None:
    job_id = await insert_one(storage, max_retries=2)
    claimed = await claim_one(storage)
    await complete(storage, claimed)

    assert await storage.fail_job(Failure(claimed.ref, "RuntimeError: late")) is None
    assert (await get(storage, job_id)).status is JobStatus.COMPLETED


async def test_complete_after_fail_is_refused(storage: JobStorage) -> None:
    job_id = await insert_one(storage, max_retries=2)
    claimed = await claim_one(storage)
    await fail(storage, claimed)

    assert await storage.complete_jobs([Completion(claimed.ref)]) == [None]
    assert (await get(storage, job_id)).status is JobStatus.PENDING
