"""Declared schedules (DESIGN §4): `periodic()` declares, checked at once; `start()` upserts
every declaration before its loops run, with the `schedule()` rules (an unchanged schedule
keeps its next fire time and its enabled flag)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from tests.scheduler.conftest import Payload, SchedulerFactory, eventually
from timecrisis import (
    InvalidScheduleError,
    JobContext,
    JobDefinitionNotFoundError,
    JobScheduler,
    JobStatus,
    JobStorage,
    JobValidationError,
)


def _app(make_scheduler: SchedulerFactory, store: JobStorage, every: str = "1h") -> JobScheduler:
    scheduler = make_scheduler(store)

    @scheduler.job("tick", concurrency=None)
    async def tick(data: Payload, ctx: JobContext) -> int:
        return data.n

    scheduler.periodic("ticker", "tick", {"n": 7}, schedule_type="interval", schedule_value=every)
    scheduler.periodic(
        "nightly",
        "tick",
        Payload(n=1),
        schedule_type="cron",
        schedule_value="0 3 * * *",
        time_zone="Europe/Paris",
        allow_overlap=False,
    )
    return scheduler


async def test_start_upserts_the_declared_schedules(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = _app(make_scheduler, store)
    assert scheduler.declared_schedules == ["ticker", "nightly"]
    assert await scheduler.list_scheduled_jobs() == []  # declaring writes nothing
    await scheduler.start()
    stored = {s.name: s for s in await scheduler.list_scheduled_jobs()}
    assert set(stored) == {"ticker", "nightly"}
    assert (stored["ticker"].schedule_type, stored["ticker"].schedule_value) == ("interval", "1h")
    assert stored["ticker"].data == {"n": 7, "text": ""}
    assert stored["nightly"].time_zone == "Europe/Paris"
    assert stored["nightly"].enabled


async def test_a_restart_keeps_next_run_and_enabled(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    first = _app(make_scheduler, store)
    await first.start()
    before = await first.get_scheduled_job("ticker")
    assert before is not None and before.next_run_at is not None
    await first.disable_scheduled_job("nightly")
    await first.stop()

    second = _app(make_scheduler, store)  # the next boot, same code
    await second.start()
    after = await second.get_scheduled_job("ticker")
    assert after is not None and after.next_run_at == before.next_run_at
    nightly = await second.get_scheduled_job("nightly")
    assert nightly is not None and not nightly.enabled


async def test_a_declared_schedule_fires(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = _app(make_scheduler, store, every="100ms")
    async with scheduler:

        async def fired() -> bool:
            jobs = await scheduler.list_jobs(status=JobStatus.COMPLETED, type="tick")
            return any(j.result == 7 for j in jobs)

        await eventually(fired)


async def test_declarations_are_checked_at_once(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = _app(make_scheduler, store)
    with pytest.raises(JobDefinitionNotFoundError):
        scheduler.periodic("a", "nope", {}, schedule_type="interval", schedule_value="1h")
    with pytest.raises(JobValidationError):
        scheduler.periodic("b", "tick", {"n": "x"}, schedule_type="interval", schedule_value="1h")
    with pytest.raises(InvalidScheduleError):
        scheduler.periodic("c", "tick", {}, schedule_type="cron", schedule_value="0 0 30 2 *")
    with pytest.raises(InvalidScheduleError, match="already declared"):
        scheduler.periodic("ticker", "tick", {}, schedule_type="interval", schedule_value="2h")
    with pytest.raises(InvalidScheduleError):
        scheduler.periodic(" ", "tick", {}, schedule_type="interval", schedule_value="1h")
    assert scheduler.declared_schedules == ["ticker", "nightly"]
    await scheduler.start()
    assert len(await scheduler.list_scheduled_jobs()) == 2


async def test_a_past_one_off_does_not_break_the_next_boot(
    store: JobStorage, make_scheduler: SchedulerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    scheduler = _app(make_scheduler, store)
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    scheduler.periodic("launch", "tick", {}, schedule_type="exact", schedule_value=past)
    with caplog.at_level(logging.WARNING, logger="timecrisis"):
        await scheduler.start()
    assert await scheduler.get_scheduled_job("launch") is None
    assert await scheduler.get_scheduled_job("ticker") is not None
    assert any("launch" in r.getMessage() for r in caplog.records)


async def test_declared_on_a_running_scheduler_is_upserted_at_once(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = _app(make_scheduler, store)
    async with scheduler:
        scheduler.periodic("late", "tick", {}, schedule_type="interval", schedule_value="1h")

        async def stored() -> bool:
            return await scheduler.get_scheduled_job("late") is not None

        await eventually(stored)
