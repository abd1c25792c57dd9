"""Handler control in the store (DESIGN §4): `fail_job` with an explicit retry time (the handler
raised `Retry(delay)`) and `snooze_job` (the handler raised `Snooze(delay)`)."""

from __future__ import annotations

from tests.storage.factories import (
    BOOM,
    START,
    claim,
    claim_one,
    claimed_ids,
    get,
    insert_one,
    seconds,
)
from tests.storage.test_wakeups import Signal
from timecrisis.clock import ManualClock
from timecrisis.models import FailureKind, JobStatus, RunStatus
from timecrisis.storage.base import ClaimRef, Completion, Failure, JobQuery, JobStorage

# ---- fail_job with retry_in ---------------------------------------------------------------------


async def test_an_explicit_retry_delay_replaces_the_backoff(
    storage: JobStorage, clock: ManualClock
) -> None:
    # A backoff of an hour: the explicit delay must win over it.
    job_id = await insert_one(storage, max_retries=3, backoff_strategy="linear", retry_delay=3600)
    claimed = await claim_one(storage)
    clock.advance(5)

    outcome = await storage.fail_job(Failure(claimed.ref, BOOM, retry_in=seconds(2)))

    assert outcome is not None and outcome.will_retry is True
    job = await get(storage, job_id)
    assert job.status is JobStatus.PENDING
    assert job.run_at == START + seconds(7)  # the store's now + the delay
    assert job.attempts == 1  # the attempt is charged
    assert job.worker is None
    [run] = await storage.get_job_runs(job_id)
    assert run.status is RunStatus.FAILED
    assert run.failure_kind is FailureKind.ERROR
    assert await claim(storage) == []
    clock.advance(2)
    again = await claim_one(storage)
    assert again.job.attempts == 2


async def test_an_explicit_retry_delay_is_not_capped_by_max_retry_delay(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, max_retries=1, max_retry_delay=10)
    claimed = await claim_one(storage)

    await storage.fail_job(Failure(claimed.ref, BOOM, retry_in=seconds(600)))

    assert (await get(storage, job_id)).run_at == START + seconds(600)


async def test_a_zero_retry_delay_retries_at_once(storage: JobStorage) -> None:
    job_id = await insert_one(storage, max_retries=1, retry_delay=3600)
    claimed = await claim_one(storage)

    await storage.fail_job(Failure(claimed.ref, BOOM, retry_in=seconds(0)))

    assert (await get(storage, job_id)).run_at == START
    assert await claimed_ids(storage) == [job_id]


async def test_an_explicit_retry_delay_stays_within_max_retries(storage: JobStorage) -> None:
    job_id = await insert_one(storage, max_retries=0)
    claimed = await claim_one(storage)

    outcome = await storage.fail_job(Failure(claimed.ref, BOOM, retry_in=seconds(1)))

    assert outcome is not None and outcome.will_retry is False
    job = await get(storage, job_id)
    assert job.status is JobStatus.FAILED
    assert job.dead_lettered is True
    assert job.finished_at == START


async def test_an_explicit_retry_past_expires_at_dead_letters_the_job(
    storage: JobStorage,
) -> None:
    job_id = await insert_one(storage, max_retries=3, expires_at=START + seconds(10))
    claimed = await claim_one(storage)

    outcome = await storage.fail_job(Failure(claimed.ref, BOOM, retry_in=seconds(10)))

    assert outcome is not None and outcome.will_retry is False
    job = await get(storage, job_id)
    assert job.status is JobStatus.FAILED
    assert job.dead_lettered is True
    assert job.fail_reason is not None and "expires" in job.fail_reason


async def test_an_explicit_retry_of_a_cancel_requested_job_cancels_it(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, max_retries=3)
    claimed = await claim_one(storage)
    await storage.cancel_job(job_id)
    clock.advance(3)

    outcome = await storage.fail_job(Failure(claimed.ref, BOOM, retry_in=seconds(1)))

    assert outcome is not None and outcome.will_retry is False
    job = await get(storage, job_id)
    assert job.status is JobStatus.CANCELED
    assert job.finished_at == START + seconds(3)
    assert job.dead_lettered is False
    clock.advance(60)
    assert await claim(storage) == []


# ---- snooze_job ---------------------------------------------------------------------------------


async def test_snooze_gives_the_job_back_for_the_delay_without_charging_the_attempt(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, max_retries=0)
    claimed = await claim_one(storage)
    clock.advance(4)

    snoozed = await storage.snooze_job(claimed.ref, seconds(30))

    assert snoozed is not None
    assert snoozed.status is JobStatus.PENDING
    assert snoozed.run_at == START + seconds(34)  # the store's now + the delay
    assert snoozed.attempts == 0
    job = await get(storage, job_id)
    assert job == snoozed
    assert job.worker is None
    assert job.finished_at is None
    assert job.dead_lettered is False
    [run] = await storage.get_job_runs(job_id)
    assert run.status is RunStatus.RELEASED
    assert run.finished_at == START + seconds(4)
    assert run.failure_kind is None
    assert await storage.list_jobs(JobQuery(status=JobStatus.RUNNING)) == []


async def test_a_snoozed_job_runs_again_at_its_run_at_with_the_same_attempt_number(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, max_retries=0)
    await storage.snooze_job((await claim_one(storage)).ref, seconds(30))

    clock.advance(29)
    assert await claim(storage) == []
    clock.advance(1)
    again = await claim_one(storage, worker="worker-2")

    assert again.job.attempts == 1  # max_retries=0 and still claimable: nothing was charged
    runs = await storage.get_job_runs(job_id)
    assert [(r.attempt, r.status) for r in runs] == [
        (1, RunStatus.RELEASED),
        (1, RunStatus.RUNNING),
    ]


async def test_snoozing_again_and_again_never_uses_up_retries(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, max_retries=0)
    for _ in range(3):
        snoozed = await storage.snooze_job((await claim_one(storage)).ref, seconds(1))
        assert snoozed is not None and snoozed.status is JobStatus.PENDING
        clock.advance(1)

    assert (await get(storage, job_id)).attempts == 0


async def test_a_zero_snooze_is_claimable_at_once_and_wakes_listeners(
    storage: JobStorage,
) -> None:
    job_id = await insert_one(storage)
    claimed = await claim_one(storage)
    signal = Signal()
    unsubscribe = storage.add_wakeup_listener(signal)
    try:
        snoozed = await storage.snooze_job(claimed.ref, seconds(0))
        await signal.wait()
    finally:
        unsubscribe()

    assert snoozed is not None and snoozed.run_at == START
    assert await claimed_ids(storage) == [job_id]


async def test_snoozing_a_cancel_requested_job_cancels_it(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, max_retries=3)
    claimed = await claim_one(storage)
    await storage.cancel_job(job_id)
    clock.advance(5)

    snoozed = await storage.snooze_job(claimed.ref, seconds(1))

    assert snoozed is not None
    assert snoozed.status is JobStatus.CANCELED
    job = await get(storage, job_id)
    assert job.status is JobStatus.CANCELED
    assert job.finished_at == START + seconds(5)
    assert job.attempts == 1  # it ran: the attempt stays charged
    assert job.dead_lettered is False
    [run] = await storage.get_job_runs(job_id)
    assert run.status is RunStatus.RELEASED
    clock.advance(3600)
    assert await claim(storage) == []
    assert await storage.list_jobs(JobQuery(dead_lettered=True)) == []


async def test_snooze_with_a_stale_token_changes_nothing(storage: JobStorage) -> None:
    job_id = await insert_one(storage)
    claimed = await claim_one(storage)
    before = await get(storage, job_id)

    stale = ClaimRef(job_id, "stale", claimed.run_id)
    assert await storage.snooze_job(stale, seconds(1)) is None

    assert await get(storage, job_id) == before


async def test_a_snoozed_claims_token_is_stale(storage: JobStorage) -> None:
    await insert_one(storage)
    claimed = await claim_one(storage)
    await storage.snooze_job(claimed.ref, seconds(0))

    assert await storage.snooze_job(claimed.ref, seconds(0)) is None
    assert await storage.complete_jobs([Completion(claimed.ref, None)]) == [None]
    assert await storage.fail_job(Failure(claimed.ref, BOOM)) is None
    assert await storage.release_jobs([claimed.ref]) == [False]
