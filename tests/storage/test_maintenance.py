"""What the leader runs: recovering expired leases, expiring jobs, purging finished ones."""

from __future__ import annotations

from datetime import timedelta

from tests.storage.factories import (
    EMAIL,
    LEASE,
    START,
    claim,
    claim_one,
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
from timecrisis.storage.base import JobQuery, JobStorage, NewJob, NewLogEntry, PurgeParams

# ---- recover_expired_leases -------------------------------------------------------------------


async def test_an_expired_lease_is_failed_and_retried_when_attempts_are_left(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, max_retries=1, backoff_strategy="linear", retry_delay=5)
    claimed = await claim_one(storage, worker="worker-1")
    clock.advance(LEASE)

    [outcome] = await storage.recover_expired_leases()

    assert outcome.will_retry is True
    assert "lease" in outcome.error.lower()
    job = await get(storage, job_id)
    assert outcome.job == job
    assert job.status is JobStatus.PENDING
    assert job.attempts == 1  # the lost attempt stays charged
    assert job.run_at == START + LEASE + seconds(5)
    assert job.fail_reason == outcome.error
    [run] = await storage.get_job_runs(job_id)
    assert (run.id, run.status) == (claimed.run_id, RunStatus.FAILED)
    assert run.error == outcome.error
    assert run.finished_at == START + LEASE
    assert "worker-1" in outcome.error


async def test_an_expired_lease_dead_letters_a_job_without_attempts_left(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, max_retries=0)
    await claim_one(storage)
    clock.advance(LEASE)

    [outcome] = await storage.recover_expired_leases()

    assert outcome.will_retry is False
    job = await get(storage, job_id)
    assert (job.status, job.dead_lettered) == (JobStatus.FAILED, True)
    assert job.finished_at == START + LEASE


async def test_leases_that_have_not_expired_are_left_alone(
    storage: JobStorage, clock: ManualClock
) -> None:
    await insert(storage, new_job(), new_job())
    await claim_one(storage, lease_ttl=seconds(10))
    long = await claim_one(storage, lease_ttl=seconds(60))
    clock.advance(10)

    recovered = await storage.recover_expired_leases()

    assert len(recovered) == 1
    assert (await get(storage, long.job.id)).status is JobStatus.RUNNING


async def test_recovery_takes_at_most_the_limit_oldest_leases_first(
    storage: JobStorage, clock: ManualClock
) -> None:
    ids = await insert(storage, *[new_job(max_retries=1) for _ in range(4)])
    for ttl in (40, 10, 30, 20):
        await claim_one(storage, lease_ttl=seconds(ttl))
    clock.advance(60)

    first = await storage.recover_expired_leases(limit=2)
    rest = await storage.recover_expired_leases(limit=10)

    assert [o.job.id for o in first] == [ids[1], ids[3]]
    assert sorted(o.job.id for o in rest) == sorted([ids[0], ids[2]])
    assert await storage.recover_expired_leases() == []


async def test_leases_that_expire_together_are_recovered_in_enqueue_order(
    storage: JobStorage, clock: ManualClock
) -> None:
    # Ids that sort against the enqueue order: a store that breaks the tie by id is caught.
    ids = await insert(
        storage, *[NewJob(f"job-{9 - n}", EMAIL, {}, max_retries=1) for n in range(3)]
    )
    await claim(storage, limit=3)  # one claim: one lease expiry for all three
    clock.advance(LEASE)

    recovered = [await storage.recover_expired_leases(limit=1) for _ in range(3)]

    assert [[o.job.id for o in outcomes] for outcomes in recovered] == [[i] for i in ids]


async def test_a_recovered_job_frees_its_type_slot(storage: JobStorage, clock: ManualClock) -> None:
    await insert(storage, new_job(max_retries=0), new_job())
    await claim(storage, types={"email": 1})
    clock.advance(LEASE)
    await storage.recover_expired_leases()

    assert len(await claim(storage, types={"email": 1})) == 1


# ---- expire_jobs ------------------------------------------------------------------------------


async def test_expire_jobs_fails_and_dead_letters_pending_jobs_past_their_expiry(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, expires_in=seconds(30))
    clock.advance(31)

    [expired] = await storage.expire_jobs()

    job = await get(storage, job_id)
    assert expired == job
    assert job.status is JobStatus.FAILED
    assert job.dead_lettered is True
    assert job.finished_at == START + seconds(31)
    assert job.fail_reason is not None
    assert "expired" in job.fail_reason.lower()
    assert await storage.get_job_runs(job_id) == []


async def test_expire_jobs_takes_jobs_that_expire_exactly_now(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, expires_in=seconds(30))
    clock.advance(30)

    assert [job.id for job in await storage.expire_jobs()] == [job_id]


async def test_expire_jobs_leaves_jobs_that_have_not_expired(
    storage: JobStorage, clock: ManualClock
) -> None:
    later = await insert_one(storage, expires_in=seconds(60))
    await insert_one(storage)  # never expires
    clock.advance(59)

    assert await storage.expire_jobs() == []
    assert (await get(storage, later)).status is JobStatus.PENDING


async def test_expire_jobs_leaves_running_jobs_alone(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, expires_in=seconds(30))
    await claim_one(storage, lease_ttl=seconds(600))
    clock.advance(60)

    assert await storage.expire_jobs() == []
    assert (await get(storage, job_id)).status is JobStatus.RUNNING


async def test_expire_jobs_expires_delayed_jobs_that_never_became_due(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, delay=seconds(120), expires_in=seconds(60))
    clock.advance(60)

    assert [job.id for job in await storage.expire_jobs()] == [job_id]


async def test_expire_jobs_takes_at_most_the_limit(storage: JobStorage, clock: ManualClock) -> None:
    await insert(storage, *[new_job(expires_in=seconds(10)) for _ in range(5)])
    clock.advance(10)

    assert len(await storage.expire_jobs(limit=3)) == 3
    assert len(await storage.expire_jobs(limit=3)) == 2
    assert await storage.expire_jobs(limit=3) == []


async def test_an_expired_job_frees_its_unique_key(storage: JobStorage, clock: ManualClock) -> None:
    await insert_one(storage, unique_key="k", expires_in=seconds(10))
    clock.advance(10)
    await storage.expire_jobs()

    [result] = await storage.insert_jobs([new_job(unique_key="k")])

    assert result.created


async def test_a_job_waiting_for_a_retry_expires_like_any_pending_job(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(
        storage, max_retries=3, backoff_strategy="linear", retry_delay=10, expires_in=seconds(15)
    )
    await fail(storage, await claim_one(storage))  # retry due at +10, expiry at +15
    clock.advance(15)

    assert [job.id for job in await storage.expire_jobs()] == [job_id]


# ---- purge_jobs -------------------------------------------------------------------------------


async def _finished_jobs(storage: JobStorage) -> dict[str, str]:
    """One job per finished status, finished at START; plus a pending and a running job."""
    ids = await insert(storage, *[new_job() for _ in range(5)])
    completed, failed, canceled, running, pending = ids
    await complete(storage, await claim_one(storage))
    await fail(storage, await claim_one(storage), retryable=False)
    await storage.cancel_job(canceled)
    await claim_one(storage, lease_ttl=timedelta(days=365))
    return {
        "completed": completed,
        "failed": failed,
        "canceled": canceled,
        "running": running,
        "pending": pending,
    }


async def test_purge_deletes_only_finished_jobs(storage: JobStorage, clock: ManualClock) -> None:
    jobs = await _finished_jobs(storage)
    clock.advance(1)

    assert await storage.purge_jobs(PurgeParams()) == 3

    for name in ("completed", "failed", "canceled"):
        assert await storage.get_job(jobs[name]) is None
    for name in ("running", "pending"):
        assert await storage.get_job(jobs[name]) is not None


async def test_purge_deletes_only_jobs_older_than_the_given_age(
    storage: JobStorage, clock: ManualClock
) -> None:
    old = await insert_one(storage)
    await complete(storage, await claim_one(storage))
    clock.advance(timedelta(days=10))
    recent = await insert_one(storage)
    await complete(storage, await claim_one(storage))
    clock.advance(timedelta(days=1))

    assert await storage.purge_jobs(PurgeParams(older_than=timedelta(days=5))) == 1

    assert await storage.get_job(old) is None
    assert await storage.get_job(recent) is not None


async def test_purge_deletes_only_the_given_statuses(
    storage: JobStorage, clock: ManualClock
) -> None:
    jobs = await _finished_jobs(storage)
    clock.advance(1)

    deleted = await storage.purge_jobs(PurgeParams(statuses=frozenset({JobStatus.FAILED})))

    assert deleted == 1
    assert await storage.get_job(jobs["failed"]) is None
    assert await storage.get_job(jobs["completed"]) is not None
    assert await storage.get_job(jobs["canceled"]) is not None


async def test_purge_deletes_at_most_the_limit(storage: JobStorage, clock: ManualClock) -> None:
    ids = await insert(storage, *[new_job() for _ in range(5)])
    for job_id in ids:
        await storage.cancel_job(job_id)
    clock.advance(1)

    assert await storage.purge_jobs(PurgeParams(limit=2)) == 2
    assert await storage.purge_jobs(PurgeParams(limit=2)) == 2
    assert await storage.purge_jobs(PurgeParams(limit=2)) == 1
    assert await storage.purge_jobs(PurgeParams(limit=2)) == 0


async def test_purge_with_a_limit_takes_the_oldest_first(
    storage: JobStorage, clock: ManualClock
) -> None:
    ids = await insert(storage, *[new_job() for _ in range(3)])
    for job_id in reversed(ids):  # the newest job finishes first
        await storage.cancel_job(job_id)
        clock.advance(1)

    assert await storage.purge_jobs(PurgeParams(limit=1)) == 1

    assert await storage.get_job(ids[2]) is None
    assert await storage.get_job(ids[0]) is not None


async def test_purge_with_a_limit_takes_jobs_that_finished_together_in_enqueue_order(
    storage: JobStorage, clock: ManualClock
) -> None:
    ids = await insert(storage, *[NewJob(f"job-{9 - n}", EMAIL, {}) for n in range(3)])
    for job_id in reversed(ids):  # the same finish time; the rows written newest first
        await storage.cancel_job(job_id)
    clock.advance(1)

    for purged in range(1, 4):
        assert await storage.purge_jobs(PurgeParams(limit=1)) == 1
        left = [job_id for job_id in ids if await storage.get_job(job_id) is not None]
        assert left == ids[purged:]


async def test_purge_deletes_the_runs_and_logs_of_purged_jobs(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage)
    claimed = await claim_one(storage)
    await storage.append_logs([NewLogEntry(job_id, claimed.run_id, "info", "hello")])
    await complete(storage, claimed)
    clock.advance(1)

    await storage.purge_jobs(PurgeParams())

    assert await storage.get_job(job_id) is None
    assert await storage.get_job_runs(job_id) == []
    assert await storage.get_job_logs(job_id) == []


async def test_a_purged_job_leaves_the_listing(storage: JobStorage, clock: ManualClock) -> None:
    kept, purged = await insert(storage, new_job(), new_job())
    await storage.cancel_job(purged)
    clock.advance(1)

    await storage.purge_jobs(PurgeParams())

    assert [job.id for job in await storage.list_jobs(JobQuery())] == [kept]


async def test_purge_judges_a_retried_job_by_its_latest_finish(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage)
    await storage.cancel_job(job_id)
    clock.advance(timedelta(days=10))
    await storage.retry_job(job_id)
    await complete(storage, await claim_one(storage))
    clock.advance(timedelta(days=1))

    assert await storage.purge_jobs(PurgeParams(older_than=timedelta(days=5))) == 0
    assert await storage.get_job(job_id) is not None
