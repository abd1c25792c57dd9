"""Failed attempts: retries with backoff, dead letters, non-retryable errors, timeouts, expiry,
cancellation, and repairing failed jobs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.scheduler.conftest import Payload, SchedulerFactory, eventually
from timecrisis import (
    Job,
    JobContext,
    JobExpiredError,
    JobStatus,
    JobTimeoutError,
    NonRetryableError,
    RunStatus,
)
from timecrisis.storage.base import JobStorage


async def test_max_retries_n_means_n_plus_one_attempts_then_the_dead_letter_queue(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    failures: list[tuple[int, str]] = []

    def on_failed(job: Job, error: BaseException) -> None:
        failures.append((job.attempts, type(error).__name__))

    scheduler = make_scheduler(store, on_job_failed=on_failed)
    calls: list[int] = []

    @scheduler.job(
        "flaky", concurrency=None, max_retries=2, backoff_strategy="linear", retry_delay="20ms"
    )
    async def flaky(data: Payload, ctx: JobContext) -> None:
        calls.append(ctx.attempt)
        raise ValueError(f"attempt {ctx.attempt} broke")

    async with scheduler:
        job = await scheduler.wait_for_job(await scheduler.enqueue("flaky", {}), timeout=10)

    assert calls == [1, 2, 3]
    assert job.status == JobStatus.FAILED
    assert job.dead_lettered
    assert job.fail_reason == "ValueError: attempt 3 broke"
    assert failures == [(1, "ValueError"), (2, "ValueError"), (3, "ValueError")]
    runs = await scheduler.get_job_runs(job.id)
    assert [(r.attempt, r.status, r.error) for r in runs] == [
        (n, RunStatus.FAILED, f"ValueError: attempt {n} broke") for n in (1, 2, 3)
    ]
    dead = await scheduler.list_dead_letters()
    assert [d.id for d in dead] == [job.id]


async def test_a_retry_waits_for_its_backoff(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)
    starts: list[datetime] = []

    @scheduler.job("backoff", concurrency=None, max_retries=1, retry_delay="400ms")
    async def backoff(data: Payload, ctx: JobContext) -> None:
        starts.append(datetime.now(UTC))
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")

    async with scheduler:
        job = await scheduler.wait_for_job(await scheduler.enqueue("backoff", {}), timeout=10)
    assert job.status == JobStatus.COMPLETED
    assert starts[1] - starts[0] >= timedelta(seconds=0.4)  # exponential: 400ms * 2**0 (+jitter)


async def test_enqueue_options_override_the_definitions_retry_defaults(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)
    calls = 0

    @scheduler.job("override", concurrency=None, max_retries=5, retry_delay="10ms")
    async def override(data: Payload, ctx: JobContext) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("always")

    async with scheduler:
        job_id = await scheduler.enqueue("override", {}, max_retries=0, backoff_strategy="linear")
        job = await scheduler.wait_for_job(job_id, timeout=10)
    assert calls == 1
    assert (job.max_retries, job.backoff_strategy, job.status) == (0, "linear", JobStatus.FAILED)


async def test_non_retryable_error_fails_at_once(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)
    calls = 0

    @scheduler.job("fatal", concurrency=None, max_retries=5, retry_delay="10ms")
    async def fatal(data: Payload, ctx: JobContext) -> None:
        nonlocal calls
        calls += 1
        raise NonRetryableError("the account is gone")

    async with scheduler:
        job = await scheduler.wait_for_job(await scheduler.enqueue("fatal", {}), timeout=10)
    assert calls == 1
    assert job.status == JobStatus.FAILED
    assert job.fail_reason == "NonRetryableError: the account is gone"


async def test_a_handler_past_its_timeout_fails_the_attempt(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    errors: list[BaseException] = []
    scheduler = make_scheduler(store, on_job_failed=lambda job, error: errors.append(error))

    @scheduler.job("hang", concurrency=None, timeout="100ms")
    async def hang(data: Payload, ctx: JobContext) -> None:
        await asyncio.sleep(30)

    async with scheduler:
        job = await scheduler.wait_for_job(await scheduler.enqueue("hang", {}), timeout=10)
    assert job.status == JobStatus.FAILED
    assert job.fail_reason is not None
    assert job.fail_reason.startswith("JobTimeoutError: the job exceeded its timeout of 100ms")
    assert [type(e) for e in errors] == [JobTimeoutError]


async def test_a_handler_raising_timeout_error_itself_is_not_mistaken_for_the_timeout(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)

    @scheduler.job("own-timeout", concurrency=None, timeout="10s")
    async def own(data: Payload, ctx: JobContext) -> None:
        raise TimeoutError("the upstream API timed out")

    async with scheduler:
        job = await scheduler.wait_for_job(await scheduler.enqueue("own-timeout", {}), timeout=10)
    assert job.fail_reason == "TimeoutError: the upstream API timed out"


async def test_an_expired_job_never_starts_and_fails_with_a_reason(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    errors: list[BaseException] = []
    scheduler = make_scheduler(store, on_job_failed=lambda job, error: errors.append(error))
    ran = False

    @scheduler.job("perishable", concurrency=None)
    async def perishable(data: Payload, ctx: JobContext) -> None:
        nonlocal ran
        ran = True

    # Not before 1 s, but it expires after 200 ms: it must never start.
    job_id = await scheduler.enqueue("perishable", {}, delay="1s", expires_in="200ms")
    async with scheduler:
        job = await scheduler.wait_for_job(job_id, timeout=10)
    assert not ran
    assert job.status == JobStatus.FAILED
    assert job.dead_lettered
    assert job.fail_reason is not None and "expired" in job.fail_reason
    assert [type(e) for e in errors] == [JobExpiredError]


async def test_cancel_a_pending_job_and_it_never_runs(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)

    @scheduler.job("cancel-me", concurrency=None)
    async def cancel_me(data: Payload, ctx: JobContext) -> None:
        raise AssertionError("must not run")

    job_id = await scheduler.enqueue("cancel-me", {})
    assert await scheduler.cancel_job(job_id)
    assert not await scheduler.cancel_job(job_id)  # already finished
    assert not await scheduler.cancel_job("no-such-job")
    async with scheduler:
        await asyncio.sleep(0.1)
    job = await scheduler.get_job(job_id)
    assert job is not None and job.status == JobStatus.CANCELED
    assert await scheduler.get_job_runs(job_id) == []


async def test_cancel_a_running_job_sets_is_cancelled_and_it_ends_canceled(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)
    started = asyncio.Event()

    @scheduler.job("long", concurrency=None)
    async def long(data: Payload, ctx: JobContext) -> str:
        started.set()
        while not ctx.is_cancelled:
            await asyncio.sleep(0.01)
        return "stopped early"

    async with scheduler:
        job_id = await scheduler.enqueue("long", {})
        await asyncio.wait_for(started.wait(), 10)
        assert await scheduler.cancel_job(job_id)
        job = await scheduler.wait_for_job(job_id, timeout=10)
    assert job.status == JobStatus.CANCELED
    assert job.result == "stopped early"


async def test_retry_job_puts_a_dead_letter_back_with_a_fresh_set_of_attempts(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)
    healthy = False

    @scheduler.job("repairable", concurrency=None, max_retries=1, retry_delay="10ms")
    async def repairable(data: Payload, ctx: JobContext) -> str:
        if not healthy:
            raise RuntimeError("dependency down")
        return "fine"

    async with scheduler:
        job_id = await scheduler.enqueue("repairable", {})
        failed = await scheduler.wait_for_job(job_id, timeout=10)
        assert failed.status == JobStatus.FAILED and failed.attempts == 2
        healthy = True
        assert await scheduler.retry_job(job_id)
        assert not await scheduler.retry_job("no-such-job")

        async def completed() -> bool:
            job = await scheduler.get_job(job_id)
            return job is not None and job.status == JobStatus.COMPLETED

        await eventually(completed)
    job = await scheduler.get_job(job_id)
    assert job is not None and job.attempts == 1 and not job.dead_lettered
    runs = await scheduler.get_job_runs(job_id)
    assert [r.status for r in runs] == [RunStatus.FAILED, RunStatus.FAILED, RunStatus.COMPLETED]
    assert await scheduler.list_dead_letters() == []


async def test_a_payload_that_no_longer_matches_the_schema_fails_without_retrying(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    from timecrisis.storage.base import NewJob

    scheduler = make_scheduler(store)

    @scheduler.job("strict", concurrency=None, max_retries=3)
    async def strict(data: Payload, ctx: JobContext) -> None:
        raise AssertionError("must not run")

    # A job stored by an older deploy whose payload the current schema rejects.
    await store.insert_jobs(
        [NewJob(id="old-1", type="strict", data={"n": "not a number"}, max_retries=3)]
    )
    async with scheduler:
        job = await scheduler.wait_for_job("old-1", timeout=10)
    assert job.status == JobStatus.FAILED
    assert job.attempts == 1
    assert job.fail_reason is not None
    assert job.fail_reason.startswith("NonRetryableError: the stored payload no longer matches")


async def test_purge_jobs_deletes_finished_jobs_only(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)

    @scheduler.job("purge", concurrency=None)
    async def purge(data: Payload, ctx: JobContext) -> None:
        return None

    async with scheduler:
        done = await scheduler.enqueue("purge", {})
        await scheduler.wait_for_job(done, timeout=10)
    waiting = await scheduler.enqueue("purge", {})
    assert await scheduler.purge_jobs(status="completed", older_than="1h") == 0
    assert await scheduler.purge_jobs(status="completed") == 1
    assert await scheduler.get_job(done) is None
    assert await scheduler.get_job(waiting) is not None
