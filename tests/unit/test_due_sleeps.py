"""How long the loops sleep when they know when work becomes due (DESIGN §4): the schedule loop
until its next tick, the worker until a retry's or a delayed job's due time; the intervals only
cap the sleep. On a manual clock, so the figures are exact."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel

from tests.waiting import eventually
from timecrisis import InMemoryJobStorage, JobContext, JobDefinition
from timecrisis.clock import ManualClock
from timecrisis.hooks import Hooks
from timecrisis.loops._due import Anchor, DueTimes
from timecrisis.loops._periodic import PeriodicLoop
from timecrisis.loops.maintenance import ReaperStep, ScheduleFiring, sleep_until_tick
from timecrisis.loops.processing import JobProcessor
from timecrisis.loops.runtime import Runtime, Settings
from timecrisis.storage._common import new_id
from timecrisis.storage.base import ClaimParams, JobQuery, NewJob, ScheduleSpec

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_LOG = logging.getLogger("test")


class Empty(BaseModel):
    pass


async def _noop(data: Empty, ctx: JobContext) -> None:
    pass


def _runtime(storage: InMemoryJobStorage) -> Runtime:
    definition = JobDefinition(type="tick", schema=Empty, handle=_noop, concurrency=None)
    return Runtime(
        storage=storage,
        worker="w1",
        logger=_LOG,
        hooks=Hooks(),
        settings=Settings(),  # the defaults: 5 s processing, 60 s scheduling
        definitions={"tick": definition},
        is_leader=True,
    )


async def _interval(storage: InMemoryJobStorage, name: str, seconds: float) -> None:
    await storage.upsert_schedule(
        ScheduleSpec(
            name=name,
            type="tick",
            data={},
            schedule_type="interval",
            schedule_value=f"{seconds:g}s",
            time_zone=None,
            next_run_at=T0 + timedelta(seconds=seconds),
        )
    )


# ---- the schedule loop ---------------------------------------------------------------------


@pytest.mark.parametrize("every", [1.0, 10.0, 20.0])
async def test_after_firing_the_schedule_loop_sleeps_until_the_tick_it_just_computed(
    every: float,
) -> None:
    # It slept job_scheduling_interval (60 s): the next tick it read before firing is the
    # one it fired, so it knew of no other.
    clock = ManualClock(T0)
    storage = InMemoryJobStorage(clock=clock)
    await _interval(storage, "only", every)
    firing = ScheduleFiring(_runtime(storage), lambda: None)
    clock.advance(every)

    delay = await firing.step()

    assert delay is not None and every - 0.1 < delay <= every
    assert len(await storage.list_jobs(JobQuery())) == 1


async def test_the_schedule_loop_sleeps_until_the_earliest_tick_of_all_schedules() -> None:
    clock = ManualClock(T0)
    storage = InMemoryJobStorage(clock=clock)
    await _interval(storage, "every-4s", 4)
    await _interval(storage, "every-7s", 7)
    firing = ScheduleFiring(_runtime(storage), lambda: None)
    clock.advance(4)

    delay = await firing.step()  # fires every-4s (next at 8 s); every-7s is due at 7 s

    assert delay is not None and 2.9 < delay <= 3.0


def test_the_sleep_until_a_tick_is_capped_floored_and_counts_the_time_spent() -> None:
    ticks = [T0 + timedelta(seconds=30), None, T0 + timedelta(seconds=2)]
    assert sleep_until_tick(ticks, T0, 0.5, 60) == pytest.approx(1.5)
    assert sleep_until_tick(ticks, T0, 0.0, 1.0) == 1.0  # the interval caps it
    assert sleep_until_tick([None], T0, 0.0, 60) == 60  # nothing known: the interval
    assert 0 < sleep_until_tick([T0 - timedelta(seconds=1)], T0, 0.0, 60) < 0.1  # never 0


# ---- the worker ----------------------------------------------------------------------------


async def test_the_worker_sleeps_until_a_store_time_it_was_told_of() -> None:
    clock = ManualClock(T0)
    processor = JobProcessor(_runtime(InMemoryJobStorage(clock=clock)))
    assert await processor.claimer.idle_delay(5.0) == 5.0  # nothing known: the interval

    processor.note_due_at(T0 + timedelta(seconds=1))  # a 1 s retry this worker wrote
    assert await processor.claimer.idle_delay(5.0) == pytest.approx(1.0, abs=0.05)
    processor.note_due_at(T0 + timedelta(seconds=30))  # later than the interval: capped
    assert await processor.claimer.idle_delay(5.0) == pytest.approx(1.0, abs=0.05)

    # Past due: claim at once. (One reading of the store's clock serves for a while: a
    # manual clock that jumps is seen at the next reading.)
    clock.advance(2)
    processor.claimer.anchor = None
    assert await processor.claimer.idle_delay(5.0) == 0.0


async def test_the_worker_sleeps_until_a_delay_enqueued_here_ends() -> None:
    processor = JobProcessor(_runtime(InMemoryJobStorage()))
    processor.note_due_in(1.5)
    assert 1.4 < await processor.claimer.idle_delay(5.0) <= 1.5


def test_a_due_time_is_forgotten_once_a_claim_was_issued_at_or_after_it() -> None:
    due = DueTimes()
    anchor = Anchor(T0, monotonic=100.0)
    due.add_store_time(T0 + timedelta(seconds=1))
    due.add_store_time(T0 + timedelta(seconds=3))
    due.add_local_deadline(102.0)

    due.claimed_at(100.5, anchor)  # before any of them: all kept
    assert due.seconds_until_next(100.5, anchor) == pytest.approx(0.5)
    due.claimed_at(101.0, anchor)  # the 1 s one was claimable
    assert due.seconds_until_next(101.0, anchor) == pytest.approx(1.0)  # the local one, at 102
    due.claimed_at(102.0, anchor)
    assert due.seconds_until_next(102.0, anchor) == pytest.approx(1.0)  # the 3 s one
    due.claimed_at(103.0, anchor)
    assert not due and due.seconds_until_next(103.0, anchor) is None


def test_a_store_time_needs_an_anchor_read_before_the_claim() -> None:
    due = DueTimes()
    due.add_store_time(T0)
    due.claimed_at(100.0, None)  # the store's clock at that claim is unknown: kept
    due.claimed_at(100.0, Anchor(T0 + timedelta(seconds=5), monotonic=101.0))  # read after
    assert due.has_store_times
    assert due.seconds_until_next(100.0, None) is None  # no anchor: nothing to compare with


def test_the_known_times_are_bounded_keeping_the_earliest() -> None:
    due = DueTimes(limit=3)
    for seconds in (5.0, 1.0, 4.0, 2.0, 3.0):
        due.add_local_deadline(seconds)
    assert due.seconds_until_next(0.0, None) == 1.0
    due.claimed_at(3.0, None)
    assert not due  # 1, 2, 3 kept; 4 and 5 dropped (the interval finds them)


async def test_a_follower_that_becomes_leader_fires_every_tick_from_then_on() -> None:
    # The real loop, on the real clock, at the default 60 s scheduling interval: a follower's
    # pass does nothing and sleeps the interval; winning the election wakes it (as
    # JobScheduler._on_leadership_change does), and from then on it must sleep tick to tick.
    storage = InMemoryJobStorage()
    runtime = _runtime(storage)
    runtime.is_leader = False
    now = await storage.now()
    await storage.upsert_schedule(
        ScheduleSpec(
            name="fast",
            type="tick",
            data={},
            schedule_type="interval",
            schedule_value="200ms",
            time_zone=None,
            next_run_at=now + timedelta(milliseconds=200),
        )
    )
    firing = ScheduleFiring(runtime, lambda: None)
    loop = PeriodicLoop("schedules", firing.step, runtime.settings.job_scheduling_interval, _LOG)
    loop.start()
    try:
        await loop.ran.wait()  # a follower's pass: nothing fired
        assert await storage.list_jobs(JobQuery()) == []
        runtime.is_leader = True
        loop.wake()

        async def four_fired() -> bool:
            return len(await storage.list_jobs(JobQuery())) >= 4

        await eventually(four_fired, timeout=5)  # 0.8 s of ticks; the old loop slept 60 s
    finally:
        await loop.stop()


async def test_the_reaper_tells_the_worker_when_a_job_it_took_back_is_due() -> None:
    clock = ManualClock(T0)
    storage = InMemoryJobStorage(clock=clock)
    await storage.insert_jobs(
        [NewJob(id=new_id(), type="tick", data={}, max_retries=1, backoff_strategy="linear")]
    )
    lease = timedelta(seconds=60)
    claimed = await storage.claim_jobs(
        ClaimParams(worker="dead", limit=1, lease_ttl=lease, type_limits={"tick": None})
    )
    assert len(claimed) == 1
    clock.advance(61)  # the lease ran out: its worker died
    told: list[datetime] = []
    requeued: list[bool] = []

    step = ReaperStep(_runtime(storage), lambda: requeued.append(True), told.append)
    await step.step()

    assert requeued and len(told) == 1
    assert told[0] == clock.now() + timedelta(seconds=10)  # the 10 s linear backoff
