"""Failures record what happened (DESIGN §4), on every store: a failed run keeps its kind and the
handler's traceback, the job keeps the kind of its last failure, lease recovery and expiry write
their own kinds, and `Job.worker` names who ran the last attempt after the job finished."""

from __future__ import annotations

import pytest

from tests.storage.factories import LEASE, claim_one, complete, get, insert_one
from timecrisis.clock import ManualClock
from timecrisis.models import FailureKind, JobStatus, RunStatus
from timecrisis.storage.base import Failure, JobStorage

TRACE = (
    "Traceback (most recent call last):\n"
    '  File "/app/jobs.py", line 12, in send_email\n'
    "    address = data.headers['missing']\n"
    "KeyError: 'missing'\n"
)


@pytest.mark.parametrize("kind", list(FailureKind))
async def test_fail_job_stores_the_kind_and_the_traceback_and_reads_them_back(
    storage: JobStorage, kind: FailureKind
) -> None:
    job_id = await insert_one(storage, max_retries=0)
    claimed = await claim_one(storage)

    outcome = await storage.fail_job(
        Failure(claimed.ref, "KeyError: 'missing'", kind=kind, traceback=TRACE)
    )

    assert outcome is not None
    assert outcome.kind is kind
    assert outcome.job.failure_kind is kind
    [run] = await storage.get_job_runs(job_id)
    assert (run.status, run.failure_kind, run.traceback) == (RunStatus.FAILED, kind, TRACE)
    assert (await get(storage, job_id)).failure_kind is kind


async def test_a_failure_without_a_traceback_reads_back_none(storage: JobStorage) -> None:
    job_id = await insert_one(storage, max_retries=1)
    claimed = await claim_one(storage)

    outcome = await storage.fail_job(
        Failure(claimed.ref, "JobTimeoutError: too slow", kind=FailureKind.TIMEOUT)
    )

    assert outcome is not None and outcome.will_retry
    assert outcome.job.failure_kind is FailureKind.TIMEOUT  # the pending job says why it waits
    [run] = await storage.get_job_runs(job_id)
    assert (run.failure_kind, run.traceback) == (FailureKind.TIMEOUT, None)


async def test_a_run_that_did_not_fail_has_no_kind(storage: JobStorage) -> None:
    job_id = await insert_one(storage)
    await complete(storage, await claim_one(storage))

    [run] = await storage.get_job_runs(job_id)
    job = await get(storage, job_id)
    assert (run.failure_kind, run.traceback, job.failure_kind) == (None, None, None)


async def test_each_run_keeps_its_own_kind(storage: JobStorage) -> None:
    job_id = await insert_one(storage, max_retries=1, retry_delay=0)
    first = await claim_one(storage)
    await storage.fail_job(Failure(first.ref, "KeyError: 'x'", traceback=TRACE))
    second = await claim_one(storage)
    await storage.fail_job(
        Failure(second.ref, "NonRetryableError: no", False, kind=FailureKind.NON_RETRYABLE)
    )

    runs = await storage.get_job_runs(job_id)
    assert [(r.failure_kind, r.traceback) for r in runs] == [
        (FailureKind.ERROR, TRACE),
        (FailureKind.NON_RETRYABLE, None),
    ]
    assert (await get(storage, job_id)).failure_kind is FailureKind.NON_RETRYABLE


async def test_a_recovered_lease_is_of_kind_lease_expired(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, max_retries=0)
    await claim_one(storage, worker="worker-1")
    clock.advance(LEASE)

    [outcome] = await storage.recover_expired_leases()

    assert outcome.kind is FailureKind.LEASE_EXPIRED
    assert outcome.job.failure_kind is FailureKind.LEASE_EXPIRED
    [run] = await storage.get_job_runs(job_id)
    assert (run.failure_kind, run.traceback) == (FailureKind.LEASE_EXPIRED, None)


async def test_an_expired_job_is_of_kind_expired_and_gets_no_run(
    storage: JobStorage, clock: ManualClock
) -> None:
    """No attempt started, so there is no run to hold the kind: the job holds it."""
    job_id = await insert_one(storage, expires_in=LEASE)
    clock.advance(LEASE)

    [expired] = await storage.expire_jobs()

    assert expired.failure_kind is FailureKind.EXPIRED
    assert (await get(storage, job_id)).failure_kind is FailureKind.EXPIRED
    assert await storage.get_job_runs(job_id) == []


async def test_retry_job_clears_the_kind_and_the_runs_keep_theirs(storage: JobStorage) -> None:
    job_id = await insert_one(storage, max_retries=0)
    claimed = await claim_one(storage)
    await storage.fail_job(Failure(claimed.ref, "KeyError: 'x'", traceback=TRACE))

    assert await storage.retry_job(job_id)

    job = await get(storage, job_id)
    assert (job.status, job.fail_reason, job.failure_kind) == (JobStatus.PENDING, None, None)
    [run] = await storage.get_job_runs(job_id)
    assert (run.failure_kind, run.traceback) == (FailureKind.ERROR, TRACE)


async def test_lease_losses_are_counted_from_the_kind_not_the_error_text(
    storage: JobStorage, clock: ManualClock
) -> None:
    """An error that merely reads like a lease loss is not one; a lease loss is one whatever
    its text (metrics read the kind, DESIGN §4)."""
    await insert_one(storage, max_retries=0)
    lookalike = await claim_one(storage)
    await storage.fail_job(Failure(lookalike.ref, "LeaseExpiredError: raised by the handler"))
    await insert_one(storage, max_retries=0)
    await claim_one(storage)
    clock.advance(LEASE)
    await storage.recover_expired_leases()

    [stats] = [s for s in await storage.get_run_stats() if s.status is RunStatus.FAILED]
    assert (stats.runs, stats.lease_losses) == (2, 1)
    assert stats.failures == ((FailureKind.ERROR, 1), (FailureKind.LEASE_EXPIRED, 1))


# ---- Job.worker after the job finished ---------------------------------------------------------


async def test_a_completed_job_keeps_the_worker_that_ran_it(storage: JobStorage) -> None:
    job_id = await insert_one(storage)
    await complete(storage, await claim_one(storage, worker="worker-7"))

    job = await get(storage, job_id)
    assert (job.status, job.worker) == (JobStatus.COMPLETED, "worker-7")


async def test_a_canceled_job_keeps_the_worker_that_ran_it(storage: JobStorage) -> None:
    job_id = await insert_one(storage)
    await complete(storage, await claim_one(storage, worker="worker-7"), canceled=True)

    assert (await get(storage, job_id)).worker == "worker-7"


async def test_a_dead_lettered_job_keeps_the_worker_of_its_last_attempt(
    storage: JobStorage,
) -> None:
    job_id = await insert_one(storage, max_retries=1, retry_delay=0)
    first = await claim_one(storage, worker="worker-1")
    await storage.fail_job(Failure(first.ref, "KeyError: 'x'"))
    second = await claim_one(storage, worker="worker-2")
    outcome = await storage.fail_job(Failure(second.ref, "KeyError: 'x'"))

    assert outcome is not None and not outcome.will_retry
    assert outcome.job.worker == "worker-2"
    job = await get(storage, job_id)
    assert (job.status, job.worker) == (JobStatus.FAILED, "worker-2")


async def test_a_job_dead_lettered_by_lease_recovery_keeps_its_worker(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, max_retries=0)
    await claim_one(storage, worker="worker-1")
    clock.advance(LEASE)

    await storage.recover_expired_leases()

    assert (await get(storage, job_id)).worker == "worker-1"
