"""A worker's `running` count in `list_workers` is read from the jobs at the time of the call,
not the figure its last heartbeat carried: `timecrisis workers` and the dashboard show what runs
now. No heartbeat is sent between the changes and the reads below."""

from __future__ import annotations

from tests.storage.factories import (
    claim,
    claim_one,
    complete,
    fail,
    get,
    insert,
    insert_one,
    new_job,
)
from timecrisis.models import JobStatus
from timecrisis.storage.base import JobStorage


async def _running(storage: JobStorage) -> dict[str, int]:
    return {worker.name: worker.running for worker in await storage.list_workers()}


async def test_a_claim_counts_at_once_and_a_completion_drops_the_count(
    storage: JobStorage,
) -> None:
    await insert(storage, new_job(), new_job(), new_job())
    await storage.heartbeat_worker("worker-1", running=0, is_leader=False)
    await storage.heartbeat_worker("worker-2", running=0, is_leader=False)

    first, second = await claim(storage, worker="worker-1", limit=2)
    third = await claim_one(storage, worker="worker-2")
    assert await _running(storage) == {"worker-1": 2, "worker-2": 1}

    await complete(storage, first)
    await complete(storage, third)
    assert await _running(storage) == {"worker-1": 1, "worker-2": 0}

    await fail(storage, second, retryable=False)
    assert await _running(storage) == {"worker-1": 0, "worker-2": 0}


async def test_the_heartbeat_figure_is_not_reported(storage: JobStorage) -> None:
    await storage.heartbeat_worker("worker-1", running=5, is_leader=True)
    job_id = await insert_one(storage)

    assert await _running(storage) == {"worker-1": 0}  # the heartbeat said 5; nothing runs
    await claim_one(storage, worker="worker-1")
    assert (await get(storage, job_id)).status is JobStatus.RUNNING
    [worker] = await storage.list_workers()
    assert (worker.name, worker.is_leader, worker.running) == ("worker-1", True, 1)


async def test_released_jobs_and_jobs_of_unregistered_workers_are_not_counted(
    storage: JobStorage,
) -> None:
    await insert(storage, new_job(), new_job())
    await storage.heartbeat_worker("worker-1", running=0, is_leader=False)
    mine = await claim_one(storage, worker="worker-1")
    await claim_one(storage, worker="ghost")  # a worker that never sent a heartbeat

    assert await _running(storage) == {"worker-1": 1}  # the roster lists registered workers only
    assert await storage.release_jobs([mine.ref]) == [True]
    assert await _running(storage) == {"worker-1": 0}
