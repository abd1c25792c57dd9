"""The leader prunes finished jobs older than `job_retention`, with their runs and logs.

The stores here run on a clock that can jump an hour ahead while no scheduler runs: jobs finished
before the jump are old, jobs finished after it are seconds old, and a retention of a minute
separates the two without racing the wall clock. (Time keeps flowing otherwise, so leases and
leader locks expire as usual: a leader lock whose acquisition answered too late on a loaded
machine is freed by its TTL, as in production.) The pass that prunes happens on a node started
after every job has finished, so a job that is kept was really seen and spared.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.pg_support import adrop_schema, fresh_schema, require_postgres
from tests.scheduler.conftest import Payload, SchedulerFactory, eventually
from timecrisis import (
    InMemoryJobStorage,
    JobContext,
    JobScheduler,
    JobStatus,
    NonRetryableError,
    PostgresJobStorage,
    RunStatus,
    SQLiteJobStorage,
)
from timecrisis.storage.base import JobStorage

# Leader locks that a slow round trip on a loaded machine does not cost (the elector gives a
# call a third of the TTL), and that a follower takes over within a second of a resignation.
LEADER_TTL = 3


class JumpingClock:
    """The system clock, plus however far the test has pushed it."""

    def __init__(self) -> None:
        self._offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def jump(self, seconds: float) -> None:
        self._offset += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> JumpingClock:
    return JumpingClock()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: JumpingClock
) -> AsyncIterator[JobStorage]:
    """The conftest `store`, on the test's `JumpingClock` (`make_scheduler` picks this one up)."""
    if request.param == "memory":
        storage: JobStorage = InMemoryJobStorage(clock=clock)
        yield storage
        await storage.close()
    elif request.param == "sqlite":
        storage = SQLiteJobStorage(tmp_path / "jobs.db", clock=clock)
        yield storage
        await storage.close()
    else:
        url, schema = require_postgres(), fresh_schema()
        storage = PostgresJobStorage(url, schema=schema, clock=clock)
        try:
            yield storage
        finally:
            await storage.close()
            await adrop_schema(url, schema)


def _register_work(node: JobScheduler) -> None:
    @node.job("work", concurrency=None)
    async def work(data: Payload, ctx: JobContext) -> str:
        await ctx.log("info", f"working on {data.n}")
        if data.text == "poison":
            raise NonRetryableError("cannot be processed")
        return f"done {data.n}"


async def _gone(scheduler: JobScheduler, job_id: str) -> bool:
    return await scheduler.get_job(job_id) is None


async def test_the_leader_prunes_old_finished_jobs_and_keeps_the_rest(
    store: JobStorage, make_scheduler: SchedulerFactory, clock: JumpingClock
) -> None:
    # The pruner's type: enqueued now (so it is old by the time it runs), run only by the pruner.
    release = asyncio.Event()
    started = asyncio.Event()
    pruner = make_scheduler(store, worker="pruner", job_retention="1m", leader_lock_ttl=LEADER_TTL)

    @pruner.job("blocker", concurrency=None)
    async def blocker(data: Payload, ctx: JobContext) -> None:
        started.set()
        await release.wait()

    # Old jobs, finished before the jump by a node that keeps everything for 30 days.
    keeper = make_scheduler(store, worker="keeper", job_retention="30d", leader_lock_ttl=LEADER_TTL)
    _register_work(keeper)
    old_completed = await keeper.enqueue("work", {"n": 1})
    old_dead = await keeper.enqueue("work", {"n": 2, "text": "poison"})
    old_canceled = await keeper.enqueue("work", {"n": 3}, delay="1d")
    old_pending = await keeper.enqueue("work", {"n": 4}, delay="1d")  # not due during the test
    old_running = await pruner.enqueue("blocker", {})
    assert await keeper.cancel_job(old_canceled)
    async with keeper:
        assert (await keeper.wait_for_job(old_completed, timeout=10)).status == JobStatus.COMPLETED
        dead = await keeper.wait_for_job(old_dead, timeout=10)
    assert dead.status == JobStatus.FAILED and dead.dead_lettered
    assert await keeper.get_job_logs(old_completed)  # there is history to prune

    clock.jump(3600)  # everything above is now an hour old: 60 retentions of the pruner

    # A job that finishes now is recent, whatever node finished it.
    recent_node = make_scheduler(
        store, worker="recent", job_retention="30d", leader_lock_ttl=LEADER_TTL
    )
    _register_work(recent_node)
    async with recent_node:
        recent = await recent_node.enqueue("work", {"n": 5})
        assert (await recent_node.wait_for_job(recent, timeout=10)).status == JobStatus.COMPLETED

    # The pruner leads (no one else runs) and prunes as soon as it does, then every minute.
    _register_work(pruner)
    await pruner.start()

    async def pruner_leads() -> bool:
        return pruner.is_leader

    await eventually(pruner_leads, timeout=10)
    await asyncio.wait_for(started.wait(), timeout=10)

    async def old_finished_jobs_gone() -> bool:
        return all([await _gone(pruner, j) for j in (old_completed, old_dead, old_canceled)])

    await eventually(old_finished_jobs_gone, timeout=10)
    for job_id in (old_completed, old_dead, old_canceled):
        assert await pruner.get_job_runs(job_id) == []
        assert await pruner.get_job_logs(job_id) == []
    assert await pruner.list_dead_letters() == []

    # Pending and running jobs are as old, but unfinished: kept. The recent one is kept whole.
    pending = await pruner.get_job(old_pending)
    assert pending is not None and pending.status == JobStatus.PENDING
    running = await pruner.get_job(old_running)
    assert running is not None and running.status == JobStatus.RUNNING
    kept = await pruner.get_job(recent)
    assert kept is not None and kept.status == JobStatus.COMPLETED
    assert [r.status for r in await pruner.get_job_runs(recent)] == [RunStatus.COMPLETED]
    assert [log.message for log in await pruner.get_job_logs(recent)] == ["working on 5"]

    # The long-running job still finishes normally once it is let go.
    release.set()
    finished = await pruner.wait_for_job(old_running, timeout=10)
    assert finished.status == JobStatus.COMPLETED


async def test_a_follower_never_prunes(
    store: JobStorage, make_scheduler: SchedulerFactory, clock: JumpingClock
) -> None:
    worker = make_scheduler(store, worker="worker", job_retention="30d", leader_lock_ttl=LEADER_TTL)
    _register_work(worker)
    async with worker:
        old = await worker.enqueue("work", {"n": 1})
        await worker.wait_for_job(old, timeout=10)
    clock.jump(3600)

    # The leader keeps 30 days; the follower would prune after 1 s if it acted as leader.
    leader = make_scheduler(store, worker="leader", job_retention="30d", leader_lock_ttl=LEADER_TTL)
    await leader.start()

    async def leader_leads() -> bool:
        return leader.is_leader

    await eventually(leader_leads, timeout=10)
    follower = make_scheduler(
        store, worker="follower", job_retention="1s", leader_lock_ttl=LEADER_TTL
    )
    await follower.start()
    assert not follower.is_leader

    # The follower's retention loop turns every second (the loop counts its passes for tests);
    # two passes as a follower leave the old job alone.
    retention = follower._loops["retention"]
    passes = retention.iterations

    async def two_more_passes() -> bool:
        return retention.iterations >= passes + 2

    await eventually(two_more_passes, timeout=10)
    assert await follower.get_job(old) is not None

    # Handed the lead, the same node prunes it at once.
    await leader.stop()
    await eventually(lambda: _gone(follower, old), timeout=10)
    assert follower.is_leader
