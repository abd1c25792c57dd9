"""Several schedulers on one store: exactly-once claims, cluster-wide limits, leadership,
recovery from dead workers, and a store that fails while a node leads."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

from tests.scheduler.conftest import Payload, SchedulerFactory, eventually
from timecrisis import InMemoryJobStorage, JobContext, JobDefinition, JobScheduler, JobStatus
from timecrisis.storage.base import LEADER_LOCK, ClaimParams, JobStorage


def _register(scheduler: JobScheduler, job_type: str, handle: Any, concurrency: int | None) -> None:
    scheduler.register_job(
        JobDefinition(type=job_type, schema=Payload, handle=handle, concurrency=concurrency)
    )


async def test_three_schedulers_on_one_store_run_every_job_exactly_once(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    calls: Counter[int] = Counter()

    async def handle(data: Payload, ctx: JobContext) -> None:
        calls[data.n] += 1
        await asyncio.sleep(0.001)

    nodes = [make_scheduler(store, worker=f"node-{i}", max_concurrent_jobs=7) for i in range(3)]
    for node in nodes:
        _register(node, "work", handle, None)
    ids = await nodes[0].enqueue_many("work", [{"n": i} for i in range(300)])
    for node in nodes:
        await node.start()
    for job_id in ids:
        await nodes[0].wait_for_job(job_id, timeout=30)
    assert sorted(calls) == list(range(300))
    assert set(calls.values()) == {1}
    workers: Counter[str] = Counter()
    for job_id in ids:
        runs = await nodes[0].get_job_runs(job_id)
        assert len(runs) == 1
        workers[runs[0].worker] += 1
    assert len(workers) >= 2  # the work really was shared


async def test_a_per_type_limit_holds_across_three_nodes(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    running = 0
    peak = 0

    async def limited(data: Payload, ctx: JobContext) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1

    async def free(data: Payload, ctx: JobContext) -> None:
        return None

    nodes = [make_scheduler(store, worker=f"node-{i}", max_concurrent_jobs=5) for i in range(3)]
    for node in nodes:
        _register(node, "limited", limited, 2)
        _register(node, "free", free, None)
    limited_ids = await nodes[0].enqueue_many("limited", [{"n": i} for i in range(20)], priority=20)
    free_ids = await nodes[0].enqueue_many("free", [{"n": i} for i in range(20)], priority=-20)
    for node in nodes:
        await node.start()
    # The lower-priority free type is not blocked behind the limited one.
    for job_id in free_ids:
        await nodes[0].wait_for_job(job_id, timeout=30)
    for job_id in limited_ids:
        await nodes[0].wait_for_job(job_id, timeout=30)
    assert peak == 2


async def test_exactly_one_leader_and_another_takes_over_when_it_stops(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    events: list[tuple[str, str]] = []

    def hooks(name: str) -> dict[str, Any]:
        return {
            "on_leadership_acquired": lambda: events.append(("acquired", name)),
            "on_leadership_lost": lambda: events.append(("lost", name)),
        }

    # A 3 s lease, not the suite's 0.6 s: on a loaded machine a 0.2 s renewal round can time
    # out, and the leader then (rightly) steps down, which is not what this test is about.
    nodes = [
        make_scheduler(store, worker=f"node-{i}", leader_lock_ttl=3, **hooks(f"node-{i}"))
        for i in range(3)
    ]
    for node in nodes:
        await node.start()
    leaders = [n for n in nodes if n.is_leader]
    assert len(leaders) == 1
    old = leaders[0]
    await old.stop()
    assert not old.is_leader
    assert ("lost", old.worker) in events

    async def new_leader() -> bool:
        return sum(n.is_leader for n in nodes) == 1 and not old.is_leader

    # leader_lock_ttl is 3 s: followers retry every second.
    await eventually(new_leader, timeout=10)
    for _ in range(10):  # and it stays exactly one
        await asyncio.sleep(0.05)
        assert sum(n.is_leader for n in nodes) == 1
    acquired = [name for kind, name in events if kind == "acquired"]
    assert len(acquired) == 2 and acquired[0] == old.worker


class FlakyStore(InMemoryJobStorage):
    """A real in-memory store whose lock renewals can be made to fail, as a database outage
    would make them."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_renewals = False

    async def renew_lock(self, name: str, token: str, ttl: timedelta) -> bool:
        if self.fail_renewals:
            raise ConnectionError("database unreachable")
        return await super().renew_lock(name, token, ttl)


async def test_a_storage_error_while_leading_steps_down_and_the_node_carries_on(
    make_scheduler: SchedulerFactory,
) -> None:
    store = FlakyStore()
    lost: list[bool] = []
    node = make_scheduler(store, worker="solo", on_leadership_lost=lambda: lost.append(True))
    ran: list[int] = []

    async def handle(data: Payload, ctx: JobContext) -> None:
        ran.append(data.n)

    _register(node, "work", handle, None)
    await node.start()
    assert node.is_leader
    store.fail_renewals = True

    async def stepped_down() -> bool:
        return not node.is_leader

    await eventually(stepped_down, timeout=5)
    assert lost == [True]
    # Still a working worker:
    job = await node.wait_for_job(await node.enqueue("work", {"n": 1}), timeout=10)
    assert job.status == JobStatus.COMPLETED
    store.fail_renewals = False

    async def leads_again() -> bool:
        return node.is_leader

    await eventually(leads_again, timeout=5)


class SlowAnswerStore(InMemoryJobStorage):
    """A store whose first leader-lock acquire is granted at once but answers late, as when a
    commit succeeds and its reply is delayed by a slow network."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.granted: list[str] = []
        self.refused = 0

    async def acquire_lock(self, name: str, owner: str, ttl: timedelta) -> str | None:
        token = await super().acquire_lock(name, owner, ttl)
        if token is None:
            self.refused += 1
            return None
        self.granted.append(token)
        if len(self.granted) == 1:
            await asyncio.sleep(self.delay)
        return token


async def test_a_lock_granted_after_the_round_gave_up_still_makes_the_node_leader(
    make_scheduler: SchedulerFactory,
) -> None:
    # Rounds of 1 s (ttl 3 s); the first grant answers after 1.5 s, past its round. Abandoning
    # that acquire would lose its token: every later acquire is refused until the lease
    # expires, and a second grant comes only after it did.
    store = SlowAnswerStore(delay=1.5)
    node = make_scheduler(store, worker="solo", leader_lock_ttl=3)
    await node.start()
    assert not node.is_leader  # the first round gave up waiting

    async def leads() -> bool:
        return node.is_leader

    await eventually(leads, timeout=10)
    assert len(store.granted) == 1  # the late answer was taken, not a second grant
    assert store.refused == 0
    lock = await store.get_lock(LEADER_LOCK)
    assert lock is not None and lock.owner == "solo"
    await node.stop()
    assert await store.get_lock(LEADER_LOCK) is None  # resigned with the adopted token


async def test_a_lock_still_being_granted_at_stop_is_released(
    make_scheduler: SchedulerFactory,
) -> None:
    store = SlowAnswerStore(delay=0.5)  # answers within the extra round stop() gives it
    node = make_scheduler(store, worker="solo", leader_lock_ttl=0.9)  # rounds of 0.3 s
    await node.start()
    assert not node.is_leader and len(store.granted) == 1
    await node.stop()
    assert await store.get_lock(LEADER_LOCK) is None  # a follower need not wait for expiry


async def test_the_leader_takes_back_the_jobs_of_a_dead_worker(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    failed: list[str] = []
    node = make_scheduler(
        store, worker="alive", on_job_failed=lambda job, e: failed.append(type(e).__name__)
    )
    ran: list[int] = []

    async def handle(data: Payload, ctx: JobContext) -> None:
        ran.append(ctx.attempt)

    node.register_job(
        JobDefinition(
            type="work", schema=Payload, handle=handle, concurrency=None, retry_delay="10ms"
        )
    )
    job_id = await node.enqueue("work", {}, max_retries=1)
    # A worker that claims the job and then dies: it never renews, completes or heartbeats.
    # Its own deadline (3 heartbeats of 0.1 s) decides when the leader removes it.
    await store.heartbeat_worker("dead", running=1, is_leader=False, ttl=timedelta(seconds=0.3))
    claims = await store.claim_jobs(
        ClaimParams(
            worker="dead", limit=1, lease_ttl=timedelta(seconds=0.3), type_limits={"work": None}
        )
    )
    assert [c.job.id for c in claims] == [job_id]
    await node.start()
    job = await node.wait_for_job(job_id, timeout=10)
    assert job.status == JobStatus.COMPLETED
    assert ran == [2]  # the dead worker's attempt counted
    assert failed == ["LeaseExpiredError"]

    async def dead_worker_removed() -> bool:
        return [w.name for w in await node.list_workers()] == ["alive"]

    await eventually(dead_worker_removed, timeout=5)


async def test_a_heartbeat_registers_a_worker_again_after_its_row_vanished(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    node = make_scheduler(store, worker="phoenix")
    await node.start()
    assert [w.name for w in await node.list_workers()] == ["phoenix"]
    await store.remove_worker("phoenix")

    async def back() -> bool:
        return [w.name for w in await node.list_workers()] == ["phoenix"]

    await eventually(back, timeout=5)
    info = (await node.list_workers())[0]
    assert info.is_leader
