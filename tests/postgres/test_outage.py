"""A database outage in the middle of a stream of jobs, as a server restart would cause: a TCP
proxy between the worker and PostgreSQL cuts every connection and refuses new ones for two
seconds, then lets them through again.

Afterwards: every job has completed, none twice (the store's run history says so), the worker
kept all its loops (heartbeats, leadership, claims), and the LISTEN connection is back, so a
job enqueued elsewhere starts on a wake-up, not at the next poll (the poll interval is 30 s).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.postgres.conftest import StoreFactory
from tests.scheduler.conftest import Payload, eventually
from tests.tcp_proxy import TcpProxy
from timecrisis import JobContext, JobDefinition, JobScheduler, JobStatus, RunStatus

pytestmark = pytest.mark.postgres

JOBS = 40
CUT_AFTER = 10  # completions before the cut: the stream is well under way
OUTAGE_SECONDS = 2.0
# Only a wake-up can start a job sooner than this: the bounds below stay well under it.
POLL_INTERVAL = 30
GUARD = 20  # hang guards, all below POLL_INTERVAL


@pytest.fixture
async def proxy(pg_url: str) -> AsyncIterator[TcpProxy]:
    params = conninfo_to_dict(pg_url)
    host = str(params.get("host") or "127.0.0.1")
    if host.startswith("/"):
        pytest.fail(f"the outage test needs PostgreSQL over TCP, not the socket in {host}")
    async with TcpProxy(host, int(params.get("port") or 5432)) as running:
        yield running


def _definition(handle: Callable[[Payload, JobContext], Awaitable[int]]) -> JobDefinition[Payload]:
    # Retries are quick: a claim whose reply the cut swallowed is retried after its lease.
    return JobDefinition(
        type="work",
        schema=Payload,
        handle=handle,
        concurrency=None,
        max_retries=5,
        retry_delay="50ms",
    )


async def test_a_worker_rides_out_a_database_outage(
    make_store: StoreFactory, proxy: TcpProxy, pg_url: str
) -> None:
    completed: Counter[int] = Counter()
    cut_now = asyncio.Event()

    async def work(data: Payload, ctx: JobContext) -> int:
        await asyncio.sleep(0.05)
        completed[data.n] += 1
        if sum(completed.values()) == CUT_AFTER:
            cut_now.set()
        return data.n

    # The producer reaches PostgreSQL directly and never starts: its enqueues reach the worker
    # only through the database (NOTIFY), never through an in-process wake-up.
    direct = make_store()
    producer = JobScheduler(direct, worker="producer")
    producer.register_job(_definition(work))

    through_proxy = make_store(make_conninfo(pg_url, host="127.0.0.1", port=str(proxy.port)))
    worker = JobScheduler(
        through_proxy,
        worker="outage-worker",
        max_concurrent_jobs=4,
        job_processing_interval=POLL_INTERVAL,
        # Leases outlast the outage and the reconnection after it, so a job that was running
        # when the line went down keeps its lease and completes once.
        job_lock_ttl=10,
        leader_lock_ttl=1,
        job_scheduling_interval=0.5,
        expired_job_check_interval=0.5,
        worker_inactive_check_interval=0.5,
        # Silent for three beats (6 s) means dead: longer than the outage and the reconnect,
        # so the leader, back in office, does not mistake its own worker for a dead one.
        worker_heartbeat_interval=2,
        shutdown_timeout=2,
    )
    worker.register_job(_definition(work))

    ids = await producer.enqueue_many("work", [{"n": n} for n in range(JOBS)])
    await worker.start()
    try:
        await asyncio.wait_for(cut_now.wait(), GUARD)
        async with proxy.outage():
            await asyncio.sleep(OUTAGE_SECONDS)  # the outage itself, not a wait for an outcome
        outage_over = await direct.now()
        assert proxy.cut > 0  # connections really were in use and were killed

        jobs = [await producer.wait_for_job(job_id, timeout=GUARD) for job_id in ids]
        assert {job.status for job in jobs} == {JobStatus.COMPLETED}
        assert sorted(job.result for job in jobs) == list(range(JOBS))
        for job in jobs:
            runs = await producer.get_job_runs(job.id)
            assert [r.status for r in runs].count(RunStatus.COMPLETED) == 1, runs
            # Any other run is an attempt whose claim the cut swallowed, taken back once its
            # lease expired; nothing else may fail.
            for run in runs:
                assert run.status == RunStatus.COMPLETED or (
                    run.status == RunStatus.FAILED
                    and (run.error or "").startswith("LeaseExpiredError:")
                ), run

        # The worker's loops kept going: it claimed and completed jobs after the outage, and
        # it beats and leads again.
        last_finished = max(job.finished_at for job in jobs if job.finished_at is not None)
        assert last_finished > outage_over
        assert worker.is_running

        async def leads() -> bool:
            return worker.is_leader

        await eventually(leads, timeout=GUARD)
        # A heartbeat half a second after the last completion also means the claim loop has
        # long gone back to its 30-second sleep after that completion woke it.
        quiet_since = last_finished + timedelta(seconds=0.5)

        async def beats_after_the_stream() -> bool:
            return await _beat_since(producer, "outage-worker", quiet_since)

        await eventually(beats_after_the_stream, timeout=GUARD)

        # The LISTEN connection came back (its reconnect wakes the worker once, on its own).
        async def listening_again() -> bool:
            return through_proxy._listener.connections >= 2 and through_proxy._listener.running

        await eventually(listening_again, timeout=GUARD)
        await asyncio.wait_for(through_proxy.wait_for_listener(), GUARD)

        late = await producer.enqueue("work", {"n": JOBS})
        job = await producer.wait_for_job(late, timeout=GUARD)
        assert job.status == JobStatus.COMPLETED
        assert completed[JOBS] == 1
    finally:
        await worker.stop(force=True)


async def _beat_since(scheduler: JobScheduler, name: str, since: datetime) -> bool:
    workers = {w.name: w for w in await scheduler.list_workers()}
    return name in workers and workers[name].last_heartbeat > since
