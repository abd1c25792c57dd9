"""Flow control end to end (docs/flow-control.md): a rate-limited type's starts are spaced by
its window and the worker sleeps until the window frees (no polling, no processing interval);
a concurrency key runs at most `key_concurrency` jobs at once while other keys run; a key for
a type that does not limit keys is refused at enqueue, with nothing written."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from tests.scheduler.conftest import Payload, SchedulerFactory
from timecrisis import JobContext, JobScheduler, JobStatus, JobStorage, JobValidationError

WAIT = 30.0


async def test_a_key_runs_at_most_key_concurrency_jobs_while_other_keys_run(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)
    running: Counter[str] = Counter()
    peaks: Counter[str] = Counter()
    overall = 0

    @scheduler.job("sync-user", concurrency=None, key_concurrency=1)
    async def sync_user(data: Payload, ctx: JobContext) -> None:
        nonlocal overall
        key = data.text
        running[key] += 1
        peaks[key] = max(peaks[key], running[key])
        overall = max(overall, sum(running.values()))
        await asyncio.sleep(0.2)
        running[key] -= 1

    ids = [await sync_user.enqueue({"text": "a"}, concurrency_key="user:a") for _ in range(3)]
    ids += await scheduler.enqueue_many(
        "sync-user", [{"text": "b"}], concurrency_key="user:b"
    ) + await asyncio.to_thread(
        scheduler.enqueue_many_sync, "sync-user", [{"text": "c"}], concurrency_key="user:c"
    )
    ids.append(await scheduler.enqueue("sync-user", {"text": "none"}))  # no key: not limited

    async with scheduler:
        done = [await scheduler.wait_for_job(i, timeout=WAIT) for i in ids]
    await scheduler.close()

    assert {job.status for job in done} == {JobStatus.COMPLETED}
    assert [job.concurrency_key for job in done[:3]] == ["user:a"] * 3
    assert peaks["a"] == 1
    assert overall >= 4  # one "a", "b", "c" and the keyless job ran together


@pytest.mark.parametrize(
    "enqueue",
    [
        lambda s: s.enqueue("plain", {}, concurrency_key="user:1"),
        lambda s: s.enqueue_many("plain", [{}, {}], concurrency_key="user:1"),
        lambda s: asyncio.to_thread(s.enqueue_sync, "plain", {}, concurrency_key="user:1"),
        lambda s: s.enqueue("keyed", {}, concurrency_key=""),
        lambda s: s.enqueue("keyed", {}, concurrency_key=5),
        lambda s: s.enqueue("keyed", {}, concurrency_key="\x00"),
    ],
)
async def test_a_bad_concurrency_key_is_a_typed_error_and_nothing_is_written(
    store: JobStorage, make_scheduler: SchedulerFactory, enqueue: Any
) -> None:
    scheduler = make_scheduler(store)

    @scheduler.job("plain", concurrency=None)
    async def plain(data: Payload, ctx: JobContext) -> None:
        pass

    @scheduler.job("keyed", concurrency=None, key_concurrency=2)
    async def keyed(data: Payload, ctx: JobContext) -> None:
        pass

    with pytest.raises(JobValidationError, match="concurrency_key"):
        await enqueue(scheduler)
    assert await scheduler.list_jobs() == []
    await scheduler.close()


async def test_a_rate_limited_type_waits_for_its_window_not_the_interval_and_never_polls(
    store: JobStorage, make_scheduler: SchedulerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An interval far beyond the test: only the store's "window frees at" can wake the worker.
    # Slow chores too: on SQLite every commit (a lock renewal, a heartbeat) wakes the claimer.
    scheduler = make_scheduler(
        store,
        job_processing_interval=60,
        leader_lock_ttl=30,
        worker_heartbeat_interval=15,
        worker_inactive_check_interval=60,
        expired_job_check_interval=60,
        job_scheduling_interval=60,
        job_lock_ttl=60,
    )
    claims = _count_claims(store, monkeypatch)

    @scheduler.job("api-call", concurrency=None, rate_limit="2/s")
    async def api_call(data: Payload, ctx: JobContext) -> None:
        pass

    async with scheduler:
        ids = await scheduler.enqueue_many("api-call", [{"n": n} for n in range(5)])
        done = [await scheduler.wait_for_job(i, timeout=WAIT) for i in ids]

    starts = sorted(job.started_at for job in done if job.started_at is not None)
    assert len(starts) == 5
    # Never more than 2 starts in one second (the store's clock)...
    gaps = [
        (later - first).total_seconds() for first, later in zip(starts, starts[2:], strict=False)
    ]
    assert min(gaps) >= 0.95, gaps
    # ...and the third window opened on time: two windows after the first start, not 60 s.
    assert (starts[-1] - starts[0]).total_seconds() < 2 + 1.0
    # A few claims per window (the claim that fills it, one woken by a finished job, one
    # when it frees), not one per poll.
    print(f"\n[{type(store).__name__}] {claims[0]} claims for 5 jobs over 3 windows")
    assert claims[0] < 20, claims


def _count_claims(store: JobStorage, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    counter = [0]
    for name in ("claim_jobs", "complete_and_claim"):
        original = getattr(store, name)

        async def counted(*args: Any, _original: Any = original) -> Any:
            counter[0] += 1
            return await _original(*args)

        monkeypatch.setattr(store, name, counted)
    return counter


async def test_definitions_take_the_flow_control_fields(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler: JobScheduler = make_scheduler(store)

    @scheduler.job("limited", concurrency=3, rate_limit="100/m", key_concurrency=2)
    async def limited(data: Payload, ctx: JobContext) -> None:
        pass

    definition = limited.definition
    assert (definition.rate_limit, definition.key_concurrency) == ("100/m", 2)
    assert str(definition.rate_limit_parsed) == "100/m"
    with pytest.raises(JobValidationError, match="rate_limit"):

        @scheduler.job("bad", concurrency=None, rate_limit="5/d")
        async def bad(data: Payload, ctx: JobContext) -> None:
            pass

    assert "bad" not in scheduler.job_definitions
    await scheduler.close()
