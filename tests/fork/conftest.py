"""Fixtures for fork-mode tests: schedulers with short intervals, stopped at teardown."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.waiting import eventually as eventually
from timecrisis import InMemoryJobStorage, JobScheduler, JobStorage, SQLiteJobStorage

FAST: dict[str, Any] = {
    "job_processing_interval": 0.05,
    "job_scheduling_interval": 0.05,
    "expired_job_check_interval": 0.05,
    "worker_heartbeat_interval": 0.25,
    "worker_inactive_check_interval": 0.1,
    "leader_lock_ttl": 0.6,
    "job_lock_ttl": 3,
    "shutdown_timeout": 2,
}

SchedulerFactory = Callable[..., JobScheduler]


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStorage]:
    storage: JobStorage
    if request.param == "memory":
        storage = InMemoryJobStorage()
    else:
        storage = SQLiteJobStorage(tmp_path / "jobs.db")
    yield storage
    await storage.close()


@pytest.fixture
async def memory() -> AsyncIterator[JobStorage]:
    storage = InMemoryJobStorage()
    yield storage
    await storage.close()


@pytest.fixture
async def make_scheduler() -> AsyncIterator[SchedulerFactory]:
    created: list[JobScheduler] = []

    def factory(storage: JobStorage, **options: Any) -> JobScheduler:
        scheduler = JobScheduler(storage, **{**FAST, **options})
        created.append(scheduler)
        return scheduler

    yield factory
    for scheduler in created:
        await scheduler.stop(force=True)


def process_exists(pid: int, *, zombies_count: bool = True) -> bool:
    """Whether there is a process `pid`. A zombie (dead, not reaped yet) counts unless told
    otherwise: the fork server reaps each child before the worker learns it exited, so a
    zombie left behind would be a bug, except after the server itself died (then init reaps)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    if zombies_count:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): kill(0) is all we know
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def logged_pid(scheduler: JobScheduler, job_id: str) -> int:
    """The pid a `handlers.block` child logs once it runs."""
    found: list[int] = []

    async def has_pid() -> bool:
        for log in await scheduler.get_job_logs(job_id):
            if log.message == "pid" and log.metadata:
                found.append(int(log.metadata["pid"]))
                return True
        return False

    await eventually(has_pid)
    return found[0]
