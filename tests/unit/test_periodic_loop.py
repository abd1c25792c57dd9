"""PeriodicLoop.stop() ends the loop whatever the loop was doing when it was told to stop."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.unit.lost_cancellation import sleep_losing_cancellation
from timecrisis.loops._periodic import PeriodicLoop


async def _no_op_step() -> float | None:
    return None


@pytest.mark.parametrize("yields_between_wake_and_stop", [0, 1, 2, 3])
async def test_stop_ends_a_loop_woken_at_the_same_moment(yields_between_wake_and_stop: int) -> None:
    # On Python 3.11, asyncio.wait_for(event.wait(), timeout) returns normally when it is
    # cancelled just as the event is set: a loop sleeping that way went on running after stop()
    # cancelled it, and stop() waited for it forever (seen as hung test teardowns). The wake-up
    # and the cancel are lined up here so that they meet, for every interleaving of the two.
    for _ in range(10):
        loop = PeriodicLoop("test", _no_op_step, 10.0, logging.getLogger("test"))
        loop.start()
        await loop.ran.wait()
        loop.wake()
        for _ in range(yields_between_wake_and_stop):
            await asyncio.sleep(0)
        stopping = asyncio.ensure_future(loop.stop())
        # A safety net, not a timing assertion: a stop that hangs never finishes at all.
        done, _ = await asyncio.wait({stopping}, timeout=5)
        assert stopping in done, "stop() did not end the loop"


async def test_a_stopped_loop_can_start_again() -> None:
    calls = 0

    async def step() -> float | None:
        nonlocal calls
        calls += 1
        return None

    loop = PeriodicLoop("test", step, 10.0, logging.getLogger("test"))
    loop.start()
    await loop.ran.wait()
    await loop.stop()
    loop.ran.clear()
    loop.start()
    await loop.ran.wait()
    await loop.stop()
    assert calls == 2


async def test_stop_ends_a_loop_whose_step_lost_the_cancellation() -> None:
    # A library call that swallows the cancellation lets the step return normally (seen on
    # PostgreSQL: the lease reaper's step ran on to its COMMIT after the stop cancelled it).
    # The loop must not then sleep out its interval before it notices the stop: the reaper's
    # is 30 s at the defaults, and a graceful stop waited all of it.
    entered = asyncio.Event()

    async def step_that_loses_the_cancellation() -> float | None:
        entered.set()
        await sleep_losing_cancellation(10)
        return 3600.0

    loop = PeriodicLoop("test", step_that_loses_the_cancellation, 3600.0, logging.getLogger("t"))
    loop.start()
    await entered.wait()
    stopping = asyncio.ensure_future(loop.stop())
    # A safety net, not a timing assertion: without the fix stop() takes the hour-long sleep.
    done, _ = await asyncio.wait({stopping}, timeout=5)
    assert stopping in done, "stop() waited for the loop's sleep"
