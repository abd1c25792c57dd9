"""Running jobs through the public API: handlers, context, results, hooks, priorities."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from tests.scheduler.conftest import Payload, SchedulerFactory
from timecrisis import (
    Job,
    JobContext,
    JobDefinition,
    JobStatus,
    RunStatus,
)
from timecrisis.storage.base import JobStorage


class Email(BaseModel):
    to: str
    subject: str = "hello"


class Result(BaseModel):
    sent: bool
    to: str


async def test_an_async_handler_runs_and_its_model_result_is_stored(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)
    seen: list[tuple[Email, int, str]] = []

    @scheduler.job("send-email", concurrency=5, priority=10)
    async def send_email(data: Email, ctx: JobContext) -> Result:
        seen.append((data, ctx.attempt, ctx.job_id))
        await ctx.log("info", f"sending to {data.to}", {"attempt": ctx.attempt})
        await ctx.update_progress(50)
        return Result(sent=True, to=data.to)

    async with scheduler:
        job_id = await scheduler.enqueue("send-email", {"to": "a@b.co"})
        job = await scheduler.wait_for_job(job_id, timeout=10)

    assert job.status == JobStatus.COMPLETED
    assert job.result == {"sent": True, "to": "a@b.co"}
    assert job.data == {"to": "a@b.co", "subject": "hello"}  # defaults filled in at enqueue
    assert job.progress == 100
    assert job.priority == 10
    assert job.attempts == 1
    assert seen == [(Email(to="a@b.co"), 1, job_id)]
    runs = await scheduler.get_job_runs(job_id)
    assert [(r.attempt, r.status, r.worker) for r in runs] == [
        (1, RunStatus.COMPLETED, scheduler.worker)
    ]
    assert runs[0].duration is not None and runs[0].duration >= 0
    logs = await scheduler.get_job_logs(job_id)
    assert [(log.level, log.message, log.metadata) for log in logs] == [
        ("info", "sending to a@b.co", {"attempt": 1})
    ]
    assert logs[0].run_id == runs[0].id


async def test_a_plain_def_handler_runs_in_a_worker_thread_with_sync_context_calls(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)
    threads: list[str] = []

    def crunch(data: Payload, ctx: JobContext) -> int:
        threads.append(threading.current_thread().name)
        ctx.log_sync("warning", "crunching")
        ctx.update_progress_sync(75)
        ctx.touch_sync()
        return data.n * 2

    scheduler.register_job(
        JobDefinition(type="crunch", schema=Payload, handle=crunch, concurrency=None)
    )
    async with scheduler:
        job = await scheduler.wait_for_job(await scheduler.enqueue("crunch", {"n": 21}), timeout=10)

    assert job.status == JobStatus.COMPLETED
    assert job.result == 42
    assert threads and threads[0] != threading.main_thread().name
    logs = await scheduler.get_job_logs(job.id)
    assert [(log.level, log.message) for log in logs] == [("warn", "crunching")]


async def test_hooks_fire_once_per_event_and_a_raising_hook_breaks_nothing(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    events: list[tuple[str, str, JobStatus]] = []

    def on_started(job: Job) -> None:
        events.append(("started", job.id, job.status))
        raise RuntimeError("a broken hook")

    async def on_completed(job: Job) -> None:
        events.append(("completed", job.id, job.status))

    def on_failed(job: Job, error: BaseException) -> None:
        events.append(("failed", job.id, job.status))

    scheduler = make_scheduler(
        store, on_job_started=on_started, on_job_completed=on_completed, on_job_failed=on_failed
    )

    @scheduler.job("maybe", concurrency=None)
    async def maybe(data: Payload, ctx: JobContext) -> None:
        if data.n < 0:
            raise ValueError("negative")

    async with scheduler:
        ok = await scheduler.enqueue("maybe", {"n": 1})
        bad = await scheduler.enqueue("maybe", {"n": -1})
        await scheduler.wait_for_job(ok, timeout=10)
        await scheduler.wait_for_job(bad, timeout=10)

    assert sorted(events) == sorted(
        [
            ("started", ok, JobStatus.RUNNING),
            ("completed", ok, JobStatus.COMPLETED),
            ("started", bad, JobStatus.RUNNING),
            ("failed", bad, JobStatus.FAILED),
        ]
    )


async def test_higher_priority_runs_first_then_enqueue_order(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store, max_concurrent_jobs=1)
    order: list[int] = []

    @scheduler.job("ordered", concurrency=None)
    async def ordered(data: Payload, ctx: JobContext) -> None:
        order.append(data.n)

    # Enqueued before start(), so the worker sees all of them at its first claim.
    ids = [
        await scheduler.enqueue("ordered", {"n": 1}, priority=-20),
        await scheduler.enqueue("ordered", {"n": 2}, priority=5),
        await scheduler.enqueue("ordered", {"n": 3}, priority=20),
        await scheduler.enqueue("ordered", {"n": 4}, priority=5),
        await scheduler.enqueue("ordered", {"n": 5}),
    ]
    async with scheduler:
        for job_id in ids:
            await scheduler.wait_for_job(job_id, timeout=10)
    assert order == [3, 2, 4, 5, 1]


async def test_an_enqueue_wakes_an_idle_worker_without_waiting_for_the_poll_interval(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    # With an hour-long poll interval, only the wake-up can start the job.
    scheduler = make_scheduler(store, job_processing_interval=3600)

    @scheduler.job("quick", concurrency=None)
    async def quick(data: Payload, ctx: JobContext) -> None:
        return None

    async with scheduler:
        await asyncio.sleep(0.05)  # let the worker go idle
        job = await scheduler.wait_for_job(await scheduler.enqueue("quick", {}), timeout=10)
    assert job.status == JobStatus.COMPLETED


async def test_a_producer_without_start_enqueues_for_a_worker_elsewhere(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    producer = make_scheduler(store, worker="web")
    worker = make_scheduler(store, worker="worker")
    ran: list[int] = []

    async def handle(data: Payload, ctx: JobContext) -> None:
        ran.append(data.n)

    for scheduler in (producer, worker):
        scheduler.register_job(
            JobDefinition(type="shared", schema=Payload, handle=handle, concurrency=None)
        )
    job_id = await producer.enqueue("shared", {"n": 7})
    assert (await producer.get_job(job_id)) is not None
    async with worker:
        job = await producer.wait_for_job(job_id, timeout=10)
    assert job.status == JobStatus.COMPLETED
    assert ran == [7]
    assert not producer.is_running


async def test_delay_and_run_at_hold_a_job_back_until_its_time(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)
    started: dict[int, datetime] = {}

    @scheduler.job("later", concurrency=None)
    async def later(data: Payload, ctx: JobContext) -> None:
        started[data.n] = datetime.now(UTC)

    async with scheduler:
        before = datetime.now(UTC)
        delayed = await scheduler.enqueue("later", {"n": 1}, delay="300ms")
        at = await scheduler.enqueue("later", {"n": 2}, run_at=before + timedelta(seconds=0.3))
        await scheduler.wait_for_job(delayed, timeout=10)
        await scheduler.wait_for_job(at, timeout=10)
    assert started[1] - before >= timedelta(seconds=0.3)
    assert started[2] - before >= timedelta(seconds=0.3)


async def test_unique_key_returns_the_holders_id_while_it_is_pending(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)

    @scheduler.job("dedupe", concurrency=None)
    async def dedupe(data: Payload, ctx: JobContext) -> None:
        return None

    first = await scheduler.enqueue("dedupe", {"n": 1}, unique_key="user-1")
    second = await scheduler.enqueue("dedupe", {"n": 2}, unique_key="user-1")
    other = await scheduler.enqueue("dedupe", {"n": 3}, unique_key="user-2")
    assert first == second
    assert other != first
    async with scheduler:
        await scheduler.wait_for_job(first, timeout=10)
        third = await scheduler.enqueue("dedupe", {"n": 4}, unique_key="user-1")
        assert third != first  # the holder finished: the key is free again
        await scheduler.wait_for_job(third, timeout=10)


async def test_enqueue_many_inserts_every_job_and_returns_ids_in_order(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)

    @scheduler.job("bulk", concurrency=None)
    async def bulk(data: Payload, ctx: JobContext) -> int:
        return data.n

    ids = await scheduler.enqueue_many("bulk", [{"n": i} for i in range(50)], priority=3)
    assert len(set(ids)) == 50
    async with scheduler:
        results = [(await scheduler.wait_for_job(i, timeout=10)).result for i in ids]
    assert results == list(range(50))


async def test_a_non_serializable_result_is_dropped_and_the_job_still_completes(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)

    @scheduler.job("odd-result", concurrency=None)
    async def odd(data: Payload, ctx: JobContext) -> Any:
        return object()

    async with scheduler:
        job = await scheduler.wait_for_job(await scheduler.enqueue("odd-result", {}), timeout=10)
    assert job.status == JobStatus.COMPLETED
    assert job.result is None


async def test_global_concurrency_caps_handlers_running_at_once_in_a_worker(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store, max_concurrent_jobs=3)
    running = 0
    peak = 0

    @scheduler.job("slow", concurrency=None)
    async def slow(data: Payload, ctx: JobContext) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1

    ids = await scheduler.enqueue_many("slow", [{"n": i} for i in range(12)])
    async with scheduler:
        for job_id in ids:
            await scheduler.wait_for_job(job_id, timeout=10)
    assert peak == 3


async def test_metrics_count_jobs_by_status_and_type(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)

    @scheduler.job("ok", concurrency=None)
    async def ok(data: Payload, ctx: JobContext) -> None:
        return None

    @scheduler.job("bad", concurrency=None)
    async def bad(data: Payload, ctx: JobContext) -> None:
        raise RuntimeError("no")

    async with scheduler:
        ids = [await scheduler.enqueue("ok", {}) for _ in range(3)]
        ids.append(await scheduler.enqueue("bad", {}))
        for job_id in ids:
            await scheduler.wait_for_job(job_id, timeout=10)
    pending = await scheduler.enqueue("ok", {})
    metrics = await scheduler.get_metrics()
    assert (metrics.completed, metrics.failed, metrics.pending, metrics.dead_letter) == (3, 1, 1, 1)
    assert metrics.types["ok"].completed == 3
    assert metrics.types["bad"].dead_letter == 1
    assert metrics.average_duration is not None
    assert (await scheduler.get_job(pending)) is not None
