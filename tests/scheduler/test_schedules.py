"""Schedules end to end: interval, cron, exact, re-registration, overlap, one job per tick."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tests.scheduler.conftest import Payload, SchedulerFactory, eventually
from timecrisis import (
    InvalidScheduleError,
    JobContext,
    JobDefinitionNotFoundError,
    JobValidationError,
)
from timecrisis.storage.base import JobStorage


async def test_an_interval_schedule_fires_repeatedly_and_stamps_its_jobs(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)
    fired: list[str] = []

    @scheduler.job("tick", concurrency=None)
    async def tick(data: Payload, ctx: JobContext) -> None:
        fired.append(ctx.job_id)

    async with scheduler:
        schedule_id = await scheduler.schedule(
            "ticker", "tick", {"n": 1}, schedule_type="interval", schedule_value="150ms"
        )

        async def three() -> bool:
            return len(fired) >= 3

        await eventually(three)
    jobs = [await scheduler.get_job(job_id) for job_id in fired]
    assert all(j is not None and j.scheduled_job_id == schedule_id for j in jobs)
    schedule = await scheduler.get_scheduled_job("ticker")
    assert schedule is not None and schedule.last_scheduled_at is not None


async def test_a_six_field_cron_fires_every_second(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)
    fired: list[datetime] = []

    @scheduler.job("cron", concurrency=None)
    async def cron(data: Payload, ctx: JobContext) -> None:
        fired.append(datetime.now(UTC))

    async with scheduler:
        await scheduler.schedule(
            "every-second",
            "cron",
            {},
            schedule_type="cron",
            schedule_value="* * * * * *",
            time_zone="Europe/Paris",
        )

        async def two() -> bool:
            return len(fired) >= 2

        await eventually(two)
    assert fired[1] - fired[0] >= timedelta(seconds=0.5)


async def test_an_exact_schedule_fires_once_then_is_disabled(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)
    fired: list[str] = []

    @scheduler.job("once", concurrency=None)
    async def once(data: Payload, ctx: JobContext) -> None:
        fired.append(ctx.job_id)

    at = (datetime.now(UTC) + timedelta(milliseconds=300)).isoformat()
    async with scheduler:
        await scheduler.schedule("one-shot", "once", {}, schedule_type="exact", schedule_value=at)

        async def disabled() -> bool:
            schedule = await scheduler.get_scheduled_job("one-shot")
            return schedule is not None and not schedule.enabled and len(fired) == 1

        await eventually(disabled)
        # The schedule loop turns over several more times (FAST: every 50 ms): a disabled
        # exact schedule must not fire again in any of them.
        loop = scheduler._loops["schedules"]
        seen = loop.iterations

        async def turned_over() -> bool:
            return loop.iterations >= seen + 4

        await eventually(turned_over)
    assert len(fired) == 1


async def test_re_registering_an_unchanged_schedule_keeps_its_next_run(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)

    @scheduler.job("report", concurrency=None)
    async def report(data: Payload, ctx: JobContext) -> None:
        return None

    first_id = await scheduler.schedule(
        "nightly", "report", {"n": 1}, schedule_type="interval", schedule_value="1h"
    )
    first = await scheduler.get_scheduled_job("nightly")
    await scheduler.disable_scheduled_job("nightly")
    await asyncio.sleep(0.01)
    again_id = await scheduler.schedule(
        "nightly", "report", {"n": 1}, schedule_type="interval", schedule_value="1h"
    )
    again = await scheduler.get_scheduled_job("nightly")
    assert first is not None and again is not None
    assert again_id == first_id
    assert again.next_run_at == first.next_run_at  # a restart never pushes an interval out
    assert not again.enabled  # the flag is kept unless passed
    changed_id = await scheduler.schedule(
        "nightly",
        "report",
        {"n": 2},
        schedule_type="interval",
        schedule_value="1h",
        enabled=True,
    )
    changed = await scheduler.get_scheduled_job("nightly")
    assert changed is not None and changed_id == first_id
    assert changed.enabled and changed.data == {"n": 2, "text": ""}
    assert [s.name for s in await scheduler.list_scheduled_jobs()] == ["nightly"]
    assert await scheduler.delete_scheduled_job("nightly")
    assert await scheduler.get_scheduled_job("nightly") is None
    assert not await scheduler.delete_scheduled_job("nightly")


async def test_re_registering_an_interval_written_differently_keeps_its_next_run(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)

    @scheduler.job("report", concurrency=None, priority=1)
    async def report(data: Payload, ctx: JobContext) -> None:
        return None

    await scheduler.schedule("x", "report", {}, schedule_type="interval", schedule_value="10m")
    first = await scheduler.get_scheduled_job("x")
    await asyncio.sleep(0.01)  # a re-registration that moved it would move it by this much
    await scheduler.schedule("x", "report", {}, schedule_type="interval", schedule_value="600s")
    again = await scheduler.get_scheduled_job("x")
    assert first is not None and again is not None
    assert again.next_run_at == first.next_run_at  # '600s' is '10m': not a change
    assert again.schedule_value == "600s"


async def test_re_registering_with_a_new_priority_updates_the_options_not_the_next_run(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    old, new = make_scheduler(store, worker="v1"), make_scheduler(store, worker="v2")

    async def report(data: Payload, ctx: JobContext) -> None:
        return None

    old.job("report", concurrency=None, priority=1)(report)
    new.job("report", concurrency=None, priority=10, max_retries=5, retry_delay="2s")(report)
    await old.schedule("x", "report", {}, schedule_type="interval", schedule_value="1h")
    first = await old.get_scheduled_job("x")
    await asyncio.sleep(0.01)
    await new.schedule("x", "report", {}, schedule_type="interval", schedule_value="1h")
    again = await new.get_scheduled_job("x")
    assert first is not None and again is not None
    assert (first.priority, first.max_retries) == (1, 0)
    assert (again.priority, again.max_retries, again.retry_delay) == (10, 5, 2.0)
    assert again.next_run_at == first.next_run_at


async def test_allow_overlap_false_skips_ticks_while_the_previous_job_runs(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)
    release = asyncio.Event()
    started: list[str] = []

    @scheduler.job("exclusive", concurrency=None)
    async def exclusive(data: Payload, ctx: JobContext) -> None:
        started.append(ctx.job_id)
        await release.wait()

    async with scheduler:
        await scheduler.schedule(
            "no-overlap",
            "exclusive",
            {},
            schedule_type="interval",
            schedule_value="50ms",
            allow_overlap=False,
        )

        async def one() -> bool:
            return len(started) == 1

        await eventually(one)
        first = await scheduler.get_scheduled_job("no-overlap")
        assert first is not None and first.next_run_at is not None
        later = first.next_run_at + timedelta(milliseconds=250)

        async def ticks_passed() -> bool:  # the ticks are consumed (skipped), not queued
            schedule = await scheduler.get_scheduled_job("no-overlap")
            assert schedule is not None and schedule.next_run_at is not None
            return schedule.next_run_at >= later

        await eventually(ticks_passed)
        assert len(started) == 1
        assert len(await scheduler.list_jobs(type="exclusive")) == 1
        release.set()

        async def more() -> bool:
            return len(started) >= 2

        await eventually(more)


async def test_two_nodes_fire_one_job_per_tick(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    nodes = [make_scheduler(store, worker=f"node-{i}") for i in range(2)]
    for node in nodes:

        @node.job("tick", concurrency=None)
        async def tick(data: Payload, ctx: JobContext) -> None:
            return None

        await node.start()
    began = datetime.now(UTC)
    await nodes[0].schedule("t", "tick", {}, schedule_type="interval", schedule_value="100ms")

    async def several_ticks() -> bool:
        return len(await nodes[0].list_jobs(type="tick", limit=1000)) >= 5

    await eventually(several_ticks)
    jobs = await nodes[0].list_jobs(type="tick", limit=1000)
    elapsed = datetime.now(UTC) - began
    # Both nodes run the schedule loop; only the leader fires, and the store keys each job by
    # (schedule, fire time): never more jobs than ticks that came due.
    assert len(jobs) <= elapsed / timedelta(milliseconds=100) + 1


async def test_bad_schedules_are_typed_errors_and_store_nothing(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)

    @scheduler.job("s", concurrency=None)
    async def s(data: Payload, ctx: JobContext) -> None:
        return None

    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    bad = [
        {"schedule_type": "cron", "schedule_value": "61 * * * *"},
        {"schedule_type": "cron", "schedule_value": "* * *"},
        {"schedule_type": "cron", "schedule_value": "0 0 30 2 *"},
        {"schedule_type": "cron", "schedule_value": "0 * * * *", "time_zone": "Mars/Olympus"},
        {"schedule_type": "interval", "schedule_value": "often"},
        {"schedule_type": "interval", "schedule_value": "0s"},
        {"schedule_type": "exact", "schedule_value": "tomorrow"},
        {"schedule_type": "exact", "schedule_value": "2030-01-01T00:00:00"},  # naive
        {"schedule_type": "exact", "schedule_value": past},
        {"schedule_type": "exact", "schedule_value": "9999-12-31T23:00:00-05:00"},  # year 10000
        {"schedule_type": "interval", "schedule_value": "3000000d"},  # first fire: year 10240
        {"schedule_type": "interval", "schedule_value": "1000000000d"},  # past timedelta
        {"schedule_type": "weekly", "schedule_value": "monday"},
    ]
    for options in bad:
        with pytest.raises(InvalidScheduleError):
            await scheduler.schedule("bad", "s", {}, **options)  # type: ignore[arg-type]
    with pytest.raises(JobValidationError):
        await scheduler.schedule(
            "bad", "s", {"n": "x"}, schedule_type="interval", schedule_value="1m"
        )
    with pytest.raises(JobDefinitionNotFoundError):
        await scheduler.schedule("bad", "nope", {}, schedule_type="interval", schedule_value="1m")
    assert await scheduler.list_scheduled_jobs() == []
