"""Schedules: upsert by name, due ticks, and advancing a schedule exactly once per tick."""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.storage.factories import (
    EMAIL,
    REPORT,
    START,
    claim_one,
    complete,
    get,
    new_job,
    schedule_spec,
    seconds,
)
from timecrisis.clock import ManualClock
from timecrisis.hooks import Hooks
from timecrisis.loops.maintenance import ScheduleFiring
from timecrisis.loops.runtime import Runtime, Settings
from timecrisis.models import JobStatus, ScheduledJob
from timecrisis.storage._common import new_id
from timecrisis.storage.base import AdvanceResult, JobQuery, JobStorage, NewJob, ScheduleAdvance

HOUR = timedelta(hours=1)
T1 = START + HOUR


async def _schedule(storage: JobStorage, name: str = "nightly", **fields: Any) -> ScheduledJob:
    return await storage.upsert_schedule(schedule_spec(name, **fields))


def _tick_job(schedule: ScheduledJob, fire_at: datetime, **fields: Any) -> NewJob:
    return new_job(
        schedule.type,
        data=schedule.data,
        scheduled_job_id=schedule.id,
        schedule_fire_at=fire_at,
        **fields,
    )


async def _fire(
    storage: JobStorage,
    schedule: ScheduledJob,
    *,
    expected: datetime = T1,
    next_run_at: datetime | None = T1 + HOUR,
    fire_at: datetime | None = None,
    allow_overlap: bool = True,
    disable: bool = False,
) -> AdvanceResult:
    return await storage.advance_schedule(
        ScheduleAdvance(
            schedule_id=schedule.id,
            expected_next_run_at=expected,
            next_run_at=next_run_at,
            disable=disable,
            job=_tick_job(schedule, fire_at or expected),
            allow_overlap=allow_overlap,
        )
    )


# ---- upsert -----------------------------------------------------------------------------------


async def test_upsert_creates_an_enabled_schedule(storage: JobStorage) -> None:
    created = await _schedule(
        storage,
        data={"report": "daily"},
        schedule_type="cron",
        schedule_value="0 0 * * *",
        time_zone="Europe/Paris",
    )

    assert created == await storage.get_schedule("nightly")
    assert created.id
    assert created.name == "nightly"
    assert created.type == EMAIL
    assert created.data == {"report": "daily"}
    assert (created.schedule_type, created.schedule_value) == ("cron", "0 0 * * *")
    assert created.time_zone == "Europe/Paris"
    assert created.enabled is True
    assert created.allow_overlap is True
    assert created.next_run_at == T1
    assert created.last_scheduled_at is None


async def test_upsert_can_create_a_disabled_schedule(storage: JobStorage) -> None:
    created = await _schedule(storage, enabled=False)

    assert created.enabled is False


async def test_upsert_uses_the_given_id_when_it_creates(storage: JobStorage) -> None:
    schedule_id = new_id()

    created = await _schedule(storage, id=schedule_id)

    assert created.id == schedule_id


async def test_re_upserting_an_unchanged_schedule_keeps_its_state(
    storage: JobStorage, clock: ManualClock
) -> None:
    original = await _schedule(storage)
    await storage.set_schedule_enabled("nightly", False)
    await _fire(storage, original)
    clock.advance(HOUR)

    again = await _schedule(storage, next_run_at=START + timedelta(days=9), id=new_id())

    assert again.id == original.id
    assert again.next_run_at == T1 + HOUR  # what the advance set, not the new spec's
    assert again.last_scheduled_at == T1
    assert again.enabled is False


async def test_payloads_are_compared_as_json_not_as_text(storage: JobStorage) -> None:
    await _schedule(storage, data={"a": 1, "b": [1, 2]})

    again = await _schedule(storage, data={"b": [1, 2], "a": 1}, next_run_at=T1 + HOUR)

    assert again.next_run_at == T1


CHANGES: dict[str, dict[str, Any]] = {
    "type": {"type": REPORT},
    "schedule_type": {"schedule_type": "cron", "schedule_value": "0 * * * *"},
    "schedule_value": {"schedule_value": "2h"},
    "time_zone": {"time_zone": "Europe/Paris"},
    "data": {"data": {"n": 2}},
}


@pytest.mark.parametrize("change", list(CHANGES.values()), ids=list(CHANGES))
async def test_a_changed_definition_replaces_next_run_at(
    storage: JobStorage, change: dict[str, Any]
) -> None:
    original = await _schedule(storage)
    new_next = START + timedelta(minutes=5)

    updated = await _schedule(storage, next_run_at=new_next, **change)

    assert updated.id == original.id
    assert updated.next_run_at == new_next
    for field, value in change.items():
        assert getattr(updated, field) == value


async def test_a_changed_definition_keeps_the_enabled_flag(storage: JobStorage) -> None:
    await _schedule(storage, enabled=False)

    updated = await _schedule(storage, schedule_value="2h")

    assert updated.enabled is False


async def test_upsert_with_enabled_set_overrides_the_flag(storage: JobStorage) -> None:
    await _schedule(storage, enabled=False)

    assert (await _schedule(storage, enabled=True)).enabled is True
    assert (await _schedule(storage, enabled=False)).enabled is False
    assert (await _schedule(storage)).enabled is False  # enabled=None keeps it


async def test_upsert_always_updates_allow_overlap(storage: JobStorage) -> None:
    await _schedule(storage, allow_overlap=True)

    updated = await _schedule(storage, allow_overlap=False)

    assert updated.allow_overlap is False
    assert updated.next_run_at == T1


async def test_a_schedule_without_a_next_run_can_be_stored(storage: JobStorage) -> None:
    created = await _schedule(storage, schedule_type="exact", next_run_at=None)

    assert created.next_run_at is None


# ---- read, enable, delete ---------------------------------------------------------------------


async def test_get_schedule_of_an_unknown_name_is_none(storage: JobStorage) -> None:
    assert await storage.get_schedule("nope") is None


async def test_schedules_are_listed_by_name(storage: JobStorage) -> None:
    for name in ("weekly", "daily", "hourly"):
        await _schedule(storage, name)

    assert [s.name for s in await storage.list_schedules()] == ["daily", "hourly", "weekly"]


async def test_disable_and_enable_flip_the_flag(storage: JobStorage) -> None:
    await _schedule(storage)

    assert await storage.set_schedule_enabled("nightly", False) is True
    schedule = await storage.get_schedule("nightly")
    assert schedule is not None
    assert schedule.enabled is False
    assert await storage.set_schedule_enabled("nightly", True) is True
    schedule = await storage.get_schedule("nightly")
    assert schedule is not None
    assert schedule.enabled is True


async def test_enabling_an_unknown_schedule_returns_false(storage: JobStorage) -> None:
    assert await storage.set_schedule_enabled("nope", True) is False


async def test_delete_removes_the_schedule_but_not_its_jobs(
    storage: JobStorage, clock: ManualClock
) -> None:
    schedule = await _schedule(storage)
    clock.set(T1)
    result = await _fire(storage, schedule)

    assert await storage.delete_schedule("nightly") is True

    assert await storage.get_schedule("nightly") is None
    assert await storage.list_schedules() == []
    assert result.job_id is not None
    assert (await get(storage, result.job_id)).scheduled_job_id == schedule.id


async def test_deleting_an_unknown_schedule_returns_false(storage: JobStorage) -> None:
    assert await storage.delete_schedule("nope") is False


# ---- due schedules ----------------------------------------------------------------------------


async def test_due_schedules_are_the_enabled_ones_whose_time_has_come(
    storage: JobStorage, clock: ManualClock
) -> None:
    await _schedule(storage, "later", next_run_at=START + seconds(30))
    await _schedule(storage, "second", next_run_at=START - seconds(10))
    await _schedule(storage, "first", next_run_at=START - seconds(20))
    await _schedule(storage, "now", next_run_at=START)
    await _schedule(storage, "off", next_run_at=START - seconds(60), enabled=False)
    await _schedule(storage, "done", next_run_at=None)

    due = await storage.get_due_schedules()

    assert due.now == START
    assert [s.name for s in due.schedules] == ["first", "second", "now"]
    assert due.next_due_at == START + seconds(30)


async def test_next_due_at_ignores_disabled_schedules(storage: JobStorage) -> None:
    await _schedule(storage, "off", next_run_at=START + seconds(5), enabled=False)
    await _schedule(storage, "on", next_run_at=START + seconds(50))

    due = await storage.get_due_schedules()

    assert due.schedules == []
    assert due.next_due_at == START + seconds(50)


async def test_next_due_at_is_none_when_nothing_is_waiting(storage: JobStorage) -> None:
    await _schedule(storage, next_run_at=START)

    due = await storage.get_due_schedules()

    assert [s.name for s in due.schedules] == ["nightly"]
    assert due.next_due_at is None


async def test_due_schedules_respect_the_limit_oldest_first(storage: JobStorage) -> None:
    for i in range(5):
        await _schedule(storage, f"s{i}", next_run_at=START - seconds(10 * i))

    due = await storage.get_due_schedules(limit=2)

    assert [s.name for s in due.schedules] == ["s4", "s3"]


# ---- advance ----------------------------------------------------------------------------------


async def test_advance_fires_a_job_for_the_tick_and_moves_the_schedule(
    storage: JobStorage, clock: ManualClock
) -> None:
    schedule = await _schedule(storage, data={"n": 7})
    clock.set(T1)

    result = await _fire(storage, schedule)

    assert result.advanced is True
    assert result.skipped_overlap is False
    assert result.job_id is not None
    job = await get(storage, result.job_id)
    assert (job.type, job.data, job.scheduled_job_id) == (EMAIL, {"n": 7}, schedule.id)
    assert job.status is JobStatus.PENDING
    moved = await storage.get_schedule("nightly")
    assert moved is not None
    assert moved.next_run_at == T1 + HOUR
    assert moved.last_scheduled_at == T1
    assert moved.enabled is True


async def test_a_second_advance_with_the_same_expected_time_loses(storage: JobStorage) -> None:
    schedule = await _schedule(storage)
    first = await _fire(storage, schedule)

    second = await _fire(storage, schedule, next_run_at=T1 + 2 * HOUR)

    assert first.advanced is True
    assert second.advanced is False
    assert second.job_id is None
    moved = await storage.get_schedule("nightly")
    assert moved is not None
    assert moved.next_run_at == T1 + HOUR
    assert len(await storage.list_jobs(JobQuery())) == 1


async def test_a_tick_gets_one_job_even_when_two_advances_expect_different_times(
    storage: JobStorage,
) -> None:
    # A stale leader that read the schedule after the first advance still fires the same tick.
    schedule = await _schedule(storage)
    first = await _fire(storage, schedule, expected=T1, next_run_at=T1 + HOUR, fire_at=T1)

    second = await _fire(
        storage, schedule, expected=T1 + HOUR, next_run_at=T1 + 2 * HOUR, fire_at=T1
    )

    assert first.job_id is not None
    assert second.advanced is True
    assert second.job_id is None
    assert [job.id for job in await storage.list_jobs(JobQuery())] == [first.job_id]


async def test_the_store_refuses_a_second_job_for_a_tick(storage: JobStorage) -> None:
    schedule = await _schedule(storage)
    first, second = _tick_job(schedule, T1), _tick_job(schedule, T1)

    [created] = await storage.insert_jobs([first])
    [refused] = await storage.insert_jobs([second])

    assert created.created is True
    assert (refused.id, refused.created) == (first.id, False)
    assert await storage.get_job(second.id) is None


async def test_the_same_tick_is_refused_even_after_its_job_finished(storage: JobStorage) -> None:
    schedule = await _schedule(storage)
    [created] = await storage.insert_jobs([_tick_job(schedule, T1)])
    await complete(storage, await claim_one(storage))

    [refused] = await storage.insert_jobs([_tick_job(schedule, T1)])

    assert (refused.id, refused.created) == (created.id, False)


async def test_different_ticks_of_a_schedule_each_get_a_job(storage: JobStorage) -> None:
    schedule = await _schedule(storage)

    results = await storage.insert_jobs([_tick_job(schedule, T1), _tick_job(schedule, T1 + HOUR)])

    assert [r.created for r in results] == [True, True]


async def test_advance_of_an_unknown_schedule_does_nothing(storage: JobStorage) -> None:
    schedule = await _schedule(storage)
    ghost = schedule.model_copy(update={"id": new_id()})

    result = await _fire(storage, ghost)

    assert result.advanced is False
    assert await storage.list_jobs(JobQuery()) == []


async def test_advance_without_a_job_only_moves_the_schedule(storage: JobStorage) -> None:
    schedule = await _schedule(storage)

    result = await storage.advance_schedule(ScheduleAdvance(schedule.id, T1, T1 + 3 * HOUR))

    assert (result.advanced, result.job_id) == (True, None)
    moved = await storage.get_schedule("nightly")
    assert moved is not None
    assert moved.next_run_at == T1 + 3 * HOUR
    assert moved.last_scheduled_at is None
    assert await storage.list_jobs(JobQuery()) == []


async def test_advance_can_disable_and_finish_a_schedule(storage: JobStorage) -> None:
    schedule = await _schedule(storage, schedule_type="exact", schedule_value=T1.isoformat())

    result = await _fire(storage, schedule, next_run_at=None, disable=True)

    assert result.job_id is not None
    done = await storage.get_schedule("nightly")
    assert done is not None
    assert (done.enabled, done.next_run_at, done.last_scheduled_at) == (False, None, T1)
    assert (await storage.get_due_schedules()).schedules == []


async def test_last_scheduled_at_is_the_fire_time_of_the_tick(
    storage: JobStorage, clock: ManualClock
) -> None:
    schedule = await _schedule(storage)
    clock.set(T1 + timedelta(minutes=40))  # the leader is late

    await _fire(storage, schedule, fire_at=T1 + timedelta(minutes=30))

    moved = await storage.get_schedule("nightly")
    assert moved is not None
    assert moved.last_scheduled_at == T1 + timedelta(minutes=30)


async def test_a_tick_is_skipped_while_the_previous_job_is_pending_without_overlap(
    storage: JobStorage,
) -> None:
    schedule = await _schedule(storage, allow_overlap=False)
    first = await _fire(storage, schedule, allow_overlap=False)

    second = await _fire(
        storage, schedule, expected=T1 + HOUR, next_run_at=T1 + 2 * HOUR, allow_overlap=False
    )

    assert first.job_id is not None
    assert (second.advanced, second.job_id, second.skipped_overlap) == (True, None, True)
    moved = await storage.get_schedule("nightly")
    assert moved is not None
    assert moved.next_run_at == T1 + 2 * HOUR  # the schedule moves on past the skipped tick
    assert moved.last_scheduled_at == T1


async def test_a_tick_is_skipped_while_the_previous_job_runs_without_overlap(
    storage: JobStorage,
) -> None:
    schedule = await _schedule(storage, allow_overlap=False)
    await _fire(storage, schedule, allow_overlap=False)
    await claim_one(storage)

    second = await _fire(
        storage, schedule, expected=T1 + HOUR, next_run_at=T1 + 2 * HOUR, allow_overlap=False
    )

    assert second.skipped_overlap is True


async def test_a_tick_fires_once_the_previous_job_finished_without_overlap(
    storage: JobStorage,
) -> None:
    schedule = await _schedule(storage, allow_overlap=False)
    await _fire(storage, schedule, allow_overlap=False)
    await complete(storage, await claim_one(storage))

    second = await _fire(
        storage, schedule, expected=T1 + HOUR, next_run_at=T1 + 2 * HOUR, allow_overlap=False
    )

    assert second.skipped_overlap is False
    assert second.job_id is not None


async def test_ticks_overlap_when_overlap_is_allowed(storage: JobStorage) -> None:
    schedule = await _schedule(storage)
    first = await _fire(storage, schedule)

    second = await _fire(storage, schedule, expected=T1 + HOUR, next_run_at=T1 + 2 * HOUR)

    assert first.job_id is not None
    assert second.job_id is not None
    assert second.skipped_overlap is False


async def test_overlap_is_judged_per_schedule(storage: JobStorage) -> None:
    other = await _schedule(storage, "other")
    await _fire(storage, other)
    schedule = await _schedule(storage, allow_overlap=False)

    result = await _fire(storage, schedule, allow_overlap=False)

    assert result.job_id is not None


async def test_a_fired_job_carries_the_options_it_was_given(storage: JobStorage) -> None:
    schedule = await _schedule(storage)
    job = dataclasses.replace(
        _tick_job(schedule, T1), priority=7, max_retries=2, backoff_strategy="linear"
    )

    result = await storage.advance_schedule(ScheduleAdvance(schedule.id, T1, T1 + HOUR, job=job))

    assert result.job_id == job.id
    fired = await get(storage, job.id)
    assert (fired.priority, fired.max_retries, fired.backoff_strategy) == (7, 2, "linear")


# ---- job options stored with the schedule (DESIGN §4) ------------------------------------------

OPTIONS: dict[str, Any] = {
    "priority": 10,
    "max_retries": 5,
    "backoff_strategy": "linear",
    "retry_delay": 2.5,
    "max_retry_delay": 600.0,
}
STORE_DEFAULTS: dict[str, Any] = {
    "priority": 1,
    "max_retries": 0,
    "backoff_strategy": "exponential",
    "retry_delay": 10.0,
    "max_retry_delay": 86400.0,
}


def _options(schedule: ScheduledJob) -> dict[str, Any]:
    return {name: getattr(schedule, name) for name in OPTIONS}


async def test_a_schedule_stores_the_options_of_its_jobs(storage: JobStorage) -> None:
    created = await _schedule(storage, **OPTIONS)

    assert _options(created) == OPTIONS
    fetched = await storage.get_schedule("nightly")
    assert fetched is not None and _options(fetched) == OPTIONS
    [listed] = await storage.list_schedules()
    assert _options(listed) == OPTIONS


async def test_a_schedule_without_options_has_the_store_defaults(storage: JobStorage) -> None:
    assert _options(await _schedule(storage)) == STORE_DEFAULTS


async def test_due_schedules_carry_their_options(storage: JobStorage, clock: ManualClock) -> None:
    await _schedule(storage, **OPTIONS)
    clock.advance(HOUR)

    [due] = (await storage.get_due_schedules()).schedules

    assert _options(due) == OPTIONS


async def test_re_upserting_with_new_options_updates_them_and_keeps_the_next_tick(
    storage: JobStorage,
) -> None:
    # A new priority deployed with a restart changes the next job, not when it fires.
    await _schedule(storage)

    updated = await _schedule(storage, next_run_at=T1 + HOUR, **OPTIONS)

    assert _options(updated) == OPTIONS
    assert updated.next_run_at == T1
    assert _options(await _schedule(storage, next_run_at=T1 + HOUR)) == STORE_DEFAULTS


async def test_a_changed_definition_stores_the_new_options_too(storage: JobStorage) -> None:
    await _schedule(storage)

    updated = await _schedule(storage, schedule_value="2h", next_run_at=T1 + HOUR, **OPTIONS)

    assert updated.next_run_at == T1 + HOUR
    assert _options(updated) == OPTIONS


SAME_SCHEDULE: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "interval": (
        {"schedule_value": "10m"},
        {"schedule_value": "600s"},
    ),
    "interval-parts": (
        {"schedule_value": "1h30m"},
        {"schedule_value": "5400000ms"},
    ),
    "exact-offsets": (
        {"schedule_type": "exact", "schedule_value": "2030-01-01T09:00:00+01:00"},
        {"schedule_type": "exact", "schedule_value": "2030-01-01T08:00:00Z"},
    ),
    "cron-spaces": (
        {"schedule_type": "cron", "schedule_value": "0 9 * * 1-5"},
        {"schedule_type": "cron", "schedule_value": " 0  9 * *   1-5 "},
    ),
}


@pytest.mark.parametrize(("first", "second"), list(SAME_SCHEDULE.values()), ids=list(SAME_SCHEDULE))
async def test_the_same_schedule_written_differently_keeps_its_next_tick(
    storage: JobStorage, first: dict[str, Any], second: dict[str, Any]
) -> None:
    original = await _schedule(storage, **first)

    again = await _schedule(storage, next_run_at=T1 + HOUR, **second)

    assert again.id == original.id
    assert again.next_run_at == T1  # not moved: '600s' is '10m'
    assert again.schedule_value == second["schedule_value"]  # the latest spelling is shown


async def test_an_interval_of_another_length_is_a_change(storage: JobStorage) -> None:
    await _schedule(storage, schedule_value="10m")

    again = await _schedule(storage, schedule_value="601s", next_run_at=T1 + HOUR)

    assert again.next_run_at == T1 + HOUR


async def test_the_leader_fires_with_the_stored_options_without_knowing_the_type(
    storage: JobStorage, clock: ManualClock
) -> None:
    # The leader registers no type at all: the job is built from what the schedule stores.
    await _schedule(storage, type=REPORT, **OPTIONS)
    clock.advance(HOUR)
    leader = Runtime(
        storage=storage,
        worker="leader",
        logger=logging.getLogger("tests.leader"),
        hooks=Hooks(),
        settings=Settings(),
        definitions={},
        is_leader=True,
    )

    await ScheduleFiring(leader, on_jobs_created=lambda: None).step()

    [job] = await storage.list_jobs(JobQuery(type=REPORT))
    assert job.scheduled_job_id is not None
    assert (job.priority, job.max_retries, job.backoff_strategy) == (10, 5, "linear")
    assert (job.retry_delay, job.max_retry_delay) == (2.5, 600.0)
    schedule = await storage.get_schedule("nightly")
    assert schedule is not None and schedule.next_run_at == T1 + HOUR
