"""Worker rows: heartbeats, the roster, and pruning dead workers (whose jobs are then
recovered at once)."""

from __future__ import annotations

from datetime import timedelta

from tests.storage.factories import START, claim_one, get, insert, new_job, seconds
from timecrisis.clock import ManualClock
from timecrisis.models import JobStatus, WorkerInfo
from timecrisis.storage.base import DEFAULT_WORKER_TTL, JobStorage

MINUTE = timedelta(seconds=60)


async def test_a_first_heartbeat_registers_the_worker(storage: JobStorage) -> None:
    await storage.heartbeat_worker("worker-1", running=3, is_leader=True)

    # `running` is counted from the jobs (none here), not taken from the heartbeat. Without a
    # TTL of its own the worker's deadline is the default one, 45 s (3 x 15 s heartbeats).
    assert await storage.list_workers() == [
        WorkerInfo(
            name="worker-1",
            first_seen=START,
            last_heartbeat=START,
            is_leader=True,
            running=0,
            expires_at=START + seconds(45),
        )
    ]
    assert seconds(45) == DEFAULT_WORKER_TTL


async def test_a_heartbeat_updates_the_worker_and_keeps_first_seen(
    storage: JobStorage, clock: ManualClock
) -> None:
    await storage.heartbeat_worker("worker-1", running=3, is_leader=True)
    clock.advance(15)

    await storage.heartbeat_worker("worker-1", running=0, is_leader=False, ttl=seconds(180))

    [worker] = await storage.list_workers()
    assert worker.first_seen == START
    assert worker.last_heartbeat == START + seconds(15)
    assert worker.expires_at == START + seconds(15 + 180)  # the worker's own deadline
    assert (worker.running, worker.is_leader) == (0, False)


async def test_a_heartbeat_after_removal_registers_the_worker_again(
    storage: JobStorage, clock: ManualClock
) -> None:
    await storage.heartbeat_worker("worker-1", running=0, is_leader=False)
    await storage.remove_worker("worker-1")
    assert await storage.list_workers() == []
    clock.advance(30)

    await storage.heartbeat_worker("worker-1", running=1, is_leader=False)

    [worker] = await storage.list_workers()
    assert worker.first_seen == START + seconds(30)


async def test_workers_are_listed_by_name(storage: JobStorage) -> None:
    for name in ("worker-c", "worker-a", "worker-b"):
        await storage.heartbeat_worker(name, running=0, is_leader=False)

    assert [w.name for w in await storage.list_workers()] == ["worker-a", "worker-b", "worker-c"]


async def test_removing_an_unknown_worker_does_nothing(storage: JobStorage) -> None:
    await storage.heartbeat_worker("worker-1", running=0, is_leader=False)

    await storage.remove_worker("nobody")

    assert [w.name for w in await storage.list_workers()] == ["worker-1"]


async def test_prune_removes_only_workers_silent_for_longer_than_their_ttl(
    storage: JobStorage, clock: ManualClock
) -> None:
    await storage.heartbeat_worker("silent", running=0, is_leader=False, ttl=MINUTE)
    await storage.heartbeat_worker("quiet", running=0, is_leader=False, ttl=MINUTE)
    clock.advance(50)
    await storage.heartbeat_worker("alive", running=0, is_leader=False, ttl=MINUTE)
    await storage.heartbeat_worker("quiet", running=0, is_leader=False, ttl=MINUTE)
    clock.advance(20)

    removed = await storage.prune_workers()

    assert removed == ["silent"]
    assert [w.name for w in await storage.list_workers()] == ["alive", "quiet"]


async def test_prune_with_nobody_stale_removes_nothing(
    storage: JobStorage, clock: ManualClock
) -> None:
    await storage.heartbeat_worker("worker-1", running=0, is_leader=False, ttl=MINUTE)
    clock.advance(10)

    assert await storage.prune_workers() == []


async def test_prune_goes_by_each_workers_own_deadline(
    storage: JobStorage, clock: ManualClock
) -> None:
    # Three workers with their own heartbeat intervals (20 s, the default 15 s, 60 s): each
    # sends 3 x its interval. Whoever prunes, the deadlines they wrote decide (DESIGN §4).
    await storage.heartbeat_worker("fast", running=0, is_leader=False, ttl=seconds(60))
    await storage.heartbeat_worker("default", running=0, is_leader=False)
    await storage.heartbeat_worker("slow", running=0, is_leader=False, ttl=seconds(180))

    clock.advance(45)  # exactly at the default deadline: not past it yet
    assert await storage.prune_workers() == []
    clock.advance(1)
    assert await storage.prune_workers() == ["default"]
    clock.advance(15)  # 61 s of silence
    assert await storage.prune_workers() == ["fast"]
    clock.advance(60)  # 121 s: three missed 60 s heartbeats are 180 s
    assert await storage.prune_workers() == []
    assert [w.name for w in await storage.list_workers()] == ["slow"]
    clock.advance(60)
    assert await storage.prune_workers() == ["slow"]


async def test_a_heartbeat_replaces_the_deadline_even_with_a_shorter_ttl(
    storage: JobStorage, clock: ManualClock
) -> None:
    # The worker's latest word counts (it was restarted with a faster heartbeat).
    await storage.heartbeat_worker("worker-1", running=0, is_leader=False, ttl=seconds(600))
    clock.advance(1)
    await storage.heartbeat_worker("worker-1", running=0, is_leader=False, ttl=seconds(10))
    clock.advance(11)

    assert await storage.prune_workers() == ["worker-1"]


async def test_pruning_a_worker_ends_its_leases_so_its_jobs_are_recovered_at_once(
    storage: JobStorage, clock: ManualClock
) -> None:
    dead_job, live_job = await insert(storage, new_job(max_retries=1), new_job(max_retries=1))
    await storage.heartbeat_worker("dead", running=1, is_leader=False, ttl=MINUTE)
    await storage.heartbeat_worker("live", running=1, is_leader=False, ttl=MINUTE)
    await claim_one(storage, worker="dead", lease_ttl=timedelta(hours=1))
    await claim_one(storage, worker="live", lease_ttl=timedelta(hours=1))
    clock.advance(120)
    await storage.heartbeat_worker("live", running=1, is_leader=False, ttl=MINUTE)

    assert await storage.prune_workers() == ["dead"]
    recovered = await storage.recover_expired_leases()

    assert [o.job.id for o in recovered] == [dead_job]
    assert (await get(storage, dead_job)).status is JobStatus.PENDING
    assert (await get(storage, live_job)).status is JobStatus.RUNNING


async def test_pruning_a_worker_ends_its_leases_at_the_stores_now(
    storage: JobStorage, clock: ManualClock
) -> None:
    await insert(storage, new_job())
    await storage.heartbeat_worker("dead", running=1, is_leader=False, ttl=MINUTE)
    await claim_one(storage, worker="dead", lease_ttl=timedelta(hours=1))
    clock.advance(seconds(120.5))  # half a second: an instant no rounding lands on by chance

    assert await storage.prune_workers() == ["dead"]
    [outcome] = await storage.recover_expired_leases()

    assert (START + seconds(120.5)).isoformat() in outcome.error  # the lease ended "now"


async def test_pruning_a_worker_keeps_a_lease_that_had_already_expired(
    storage: JobStorage, clock: ManualClock
) -> None:
    await insert(storage, new_job())
    await storage.heartbeat_worker("dead", running=1, is_leader=False, ttl=MINUTE)
    await claim_one(storage, worker="dead", lease_ttl=seconds(30))
    clock.advance(120)

    assert await storage.prune_workers() == ["dead"]
    [outcome] = await storage.recover_expired_leases()

    assert (START + seconds(30)).isoformat() in outcome.error  # not moved later to "now"
