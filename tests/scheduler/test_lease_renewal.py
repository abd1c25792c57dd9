"""Leases are renewed automatically while an in-process handler runs, and a lease that cannot be
renewed is given up: the handler is told to stop, and the leader takes the job back and retries
it (DESIGN §1 "JobContext", §2; docs/architecture.md "Claims, leases and fencing")."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta

import pytest

from tests.scheduler.conftest import Payload, SchedulerFactory
from timecrisis import (
    Job,
    JobContext,
    JobDefinition,
    JobStatus,
    LeaseExpiredError,
    RunStatus,
)
from timecrisis.storage.base import ClaimedJob, ClaimParams, ClaimRef, JobStorage, RenewResult

# Three times the lease: without renewals, the leader's reaper (every 0.1 s here) would take
# the job back about two seconds before the handler returns.
LEASE_TTL = 1
HANDLER_SECONDS = 3


async def test_a_handler_that_outlives_its_lease_ttl_runs_once_on_two_nodes(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    calls: Counter[str] = Counter()
    failures: list[tuple[str, str]] = []

    async def slow_async(data: Payload, ctx: JobContext) -> str:
        calls[ctx.job_id] += 1
        await asyncio.sleep(HANDLER_SECONDS)
        return "async done"

    def slow_sync(data: Payload, ctx: JobContext) -> str:
        # A plain def runs in a thread: renewals come from the worker's loop, not from here.
        calls[ctx.job_id] += 1
        time.sleep(HANDLER_SECONDS)
        return "sync done"

    nodes = [
        make_scheduler(
            store,
            worker=f"node-{i}",
            job_lock_ttl=LEASE_TTL,
            on_job_failed=lambda job, error: failures.append((job.id, repr(error))),
        )
        for i in range(2)
    ]
    for node in nodes:
        for job_type, handle in (("slow-async", slow_async), ("slow-sync", slow_sync)):
            node.register_job(
                JobDefinition(
                    type=job_type,
                    schema=Payload,
                    handle=handle,
                    concurrency=None,
                    max_retries=3,
                    retry_delay="10ms",
                )
            )
    ids = [await nodes[0].enqueue("slow-async", {}), await nodes[0].enqueue("slow-sync", {})]
    for node in nodes:
        await node.start()

    jobs = [await nodes[0].wait_for_job(job_id, timeout=30) for job_id in ids]

    assert [(j.status, j.attempts, j.result) for j in jobs] == [
        (JobStatus.COMPLETED, 1, "async done"),
        (JobStatus.COMPLETED, 1, "sync done"),
    ]
    assert calls == dict.fromkeys(ids, 1)
    assert failures == []
    for job_id in ids:
        runs = await nodes[0].get_job_runs(job_id)
        assert [(r.attempt, r.status) for r in runs] == [(1, RunStatus.COMPLETED)]


@pytest.mark.parametrize(
    ("renewal", "max_concurrent_jobs"),
    [
        # Raising renewals; spare slots, so the worker may also get the job back from the store
        # before its own renewals give up (a second claim of a job it still runs).
        pytest.param("raises", 20, id="renewal-raises"),
        # Renewals that never answer (a dropped link, no reset): they must count as failed.
        # One slot, held by the stuck run: only giving the lease up frees it for the retry.
        pytest.param("hangs", 1, id="renewal-hangs"),
    ],
)
async def test_a_lease_that_cannot_be_renewed_is_given_up_and_the_job_retried(
    store: JobStorage,
    make_scheduler: SchedulerFactory,
    monkeypatch: pytest.MonkeyPatch,
    renewal: str,
    max_concurrent_jobs: int,
) -> None:
    """The first run's renewals fail as if its database link were down (every other call works):
    its handler is cancelled and sees `ctx.is_cancelled`, the leader's reaper fails the attempt
    (`on_job_failed` with `LeaseExpiredError`, the run `failed` saying so), and the retry runs
    to completion. The abandoned run writes nothing."""
    doomed: set[str] = set()  # lock tokens of the first run
    real_claim, real_renew = store.claim_jobs, store.renew_claims
    never = asyncio.Event()

    async def claim_jobs(params: ClaimParams) -> list[ClaimedJob]:
        claims = await real_claim(params)
        doomed.update(c.ref.token for c in claims if c.job.attempts == 1)
        return claims

    async def renew_claims(refs: Sequence[ClaimRef], lease_ttl: timedelta) -> RenewResult:
        if any(ref.token in doomed for ref in refs):
            if renewal == "hangs":
                await never.wait()
            raise ConnectionError("database unreachable")
        return await real_renew(refs, lease_ttl)

    monkeypatch.setattr(store, "claim_jobs", claim_jobs)
    monkeypatch.setattr(store, "renew_claims", renew_claims)

    failures: list[tuple[int, BaseException]] = []

    def on_failed(job: Job, error: BaseException) -> None:
        failures.append((job.attempts, error))

    node = make_scheduler(
        store,
        worker="solo",
        job_lock_ttl=LEASE_TTL,
        max_concurrent_jobs=max_concurrent_jobs,
        on_job_failed=on_failed,
    )
    first_run_stopped = asyncio.Event()
    seen_cancelled: list[bool] = []

    @node.job("work", concurrency=None, max_retries=1, retry_delay="10ms")
    async def work(data: Payload, ctx: JobContext) -> str:
        if ctx.attempt == 1:
            try:
                await asyncio.sleep(60)  # far beyond the lease; the test's guard ends sooner
            except asyncio.CancelledError:
                seen_cancelled.append(ctx.is_cancelled)
                first_run_stopped.set()
                raise
            return "the first run must never finish"
        return f"attempt {ctx.attempt}"

    job_id = await node.enqueue("work", {})
    await node.start()

    job = await node.wait_for_job(job_id, timeout=20)
    await asyncio.wait_for(first_run_stopped.wait(), timeout=10)

    assert (job.status, job.attempts, job.result) == (JobStatus.COMPLETED, 2, "attempt 2")
    assert seen_cancelled == [True]
    assert [(attempt, type(error)) for attempt, error in failures] == [(1, LeaseExpiredError)]
    runs = await node.get_job_runs(job_id)
    assert [(r.attempt, r.status) for r in runs] == [
        (1, RunStatus.FAILED),
        (2, RunStatus.COMPLETED),
    ]
    assert runs[0].error is not None and runs[0].error.startswith("LeaseExpiredError:")
    assert runs[0].worker == runs[1].worker == "solo"
