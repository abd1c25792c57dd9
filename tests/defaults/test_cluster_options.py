"""Cluster decisions never depend on the leader's local configuration (DESIGN §4), at the
library's defaults.

- A schedule's job options are resolved by the node that calls `schedule()` and stored with the
  schedule: a leader that does not register the type still fires its jobs with them.
- A worker's liveness deadline is its own: a worker with a 60 s heartbeat is not declared dead
  by a default leader (which would say 3 x 15 s = 45 s).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel

from tests.defaults.conftest import DefaultSchedulerFactory
from tests.storage.harness import StoreHarness
from tests.waiting import eventually
from timecrisis import JobContext, JobDefinition, JobScheduler, JobStatus, JobStorage
from timecrisis.clock import ManualClock
from timecrisis.hooks import Hooks
from timecrisis.loops.maintenance import ReaperStep
from timecrisis.loops.runtime import Runtime


class Report(BaseModel):
    title: str = "daily"


async def test_a_leader_without_the_type_fires_a_schedule_with_the_registered_options(
    store: JobStorage, default_scheduler: DefaultSchedulerFactory
) -> None:
    # The node that registers `report` schedules it and never starts (a web app, a deploy
    # script); the leader registers other types only.
    producer = default_scheduler(worker="producer")

    async def report(data: Report, ctx: JobContext) -> None:
        return None

    producer.register_job(
        JobDefinition(
            type="report",
            schema=Report,
            handle=report,
            concurrency=None,
            priority=10,
            max_retries=5,
            backoff_strategy="linear",
            retry_delay="3s",
        )
    )
    await producer.schedule("reports", "report", {}, schedule_type="interval", schedule_value="1s")
    leader = default_scheduler(worker="leader")

    @leader.job("ping", concurrency=None)
    async def ping(data: Report, ctx: JobContext) -> None:
        return None

    await leader.start()

    async def fired() -> bool:
        return bool(await leader.list_jobs(type="report"))

    await eventually(fired, timeout=15)
    assert leader.is_leader
    [job] = await leader.list_jobs(type="report")
    assert job.status is JobStatus.PENDING  # nobody runs `report` here: only its options count
    assert (job.priority, job.max_retries, job.backoff_strategy) == (10, 5, "linear")
    assert job.retry_delay == 3.0


# ---- the worker's own deadline, on a manual clock ----------------------------------------------

START = datetime(2025, 1, 1, 12, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def clocked(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[JobStorage, ManualClock]]:
    """A store of each backend on a manual clock (the conformance suite's harnesses)."""
    clock = ManualClock(START)
    module = importlib.import_module(f"tests.storage.backend_{request.param}")
    harness: StoreHarness = module.make_harness(tmp_path, clock)
    try:
        yield await harness.open(), clock
    finally:
        await harness.aclose()


async def test_a_worker_with_a_slow_heartbeat_is_not_declared_dead_by_a_default_leader(
    clocked: tuple[JobStorage, ManualClock],
) -> None:
    storage, clock = clocked
    # Built directly: the defaults fixture refuses a tuned heartbeat, and this worker is the
    # point of the test. The leader and the other worker are at the defaults.
    slow = JobScheduler(storage, worker="slow", worker_heartbeat_interval=60)
    default = JobScheduler(storage, worker="default")
    leader = JobScheduler(storage, worker="leader")
    reaper = ReaperStep(
        Runtime(
            storage=storage,
            worker=leader.worker,
            logger=logging.getLogger("tests.defaults.leader"),
            hooks=Hooks(),
            settings=leader.settings,  # every option at its default
            definitions={},
            is_leader=True,
        ),
        on_jobs_requeued=lambda: None,
    )
    await slow._heartbeat()  # what its heartbeat loop sends, every 60 s
    await default._heartbeat()

    async def roster() -> list[str]:
        await reaper.step()
        return [worker.name for worker in await storage.list_workers()]

    clock.advance(46)  # past a default worker's deadline (45 s), inside the slow one's (180 s)
    assert await roster() == ["slow"]
    clock.advance(120)  # 166 s: two missed heartbeats are not death yet
    assert await roster() == ["slow"]
    clock.advance(15)  # 181 s: three missed heartbeats of its own interval
    assert await roster() == []
