"""`timecrisis.testing.TestContext` (DESIGN §4, "Testing"): a `JobContext` that records logs
and progress, with `.cancel()` and `.shut_down()` setting the flags."""

from __future__ import annotations

import asyncio
import threading

import pytest
from pydantic import BaseModel

from timecrisis import JobContext
from timecrisis.testing import TestContext


class Order(BaseModel):
    id: int


async def handler(data: Order, ctx: JobContext) -> str:
    await ctx.log("info", f"order {data.id}", {"id": data.id})
    for percent in (25, 100):
        if ctx.is_cancelled or ctx.is_shutting_down:
            return "stopped early"
        await ctx.update_progress(percent)
    await ctx.touch()
    return f"done {ctx.job_id} #{ctx.attempt}"


async def test_records_logs_and_progress() -> None:
    ctx = TestContext(Order(id=1), job_id="job-1", attempt=2, entity_id="customer-3")
    assert isinstance(ctx, JobContext)
    assert (ctx.payload, ctx.job_id, ctx.attempt, ctx.entity_id) == (
        Order(id=1),
        "job-1",
        2,
        "customer-3",
    )
    assert await handler(Order(id=1), ctx) == "done job-1 #2"
    assert ctx.logs == [("info", "order 1", {"id": 1})]
    assert ctx.progress == [25.0, 100.0]
    assert ctx.touches == 1


async def test_cancel_and_shut_down_set_the_flags() -> None:
    cancelled = TestContext()
    flags_before = (cancelled.is_cancelled, cancelled.is_shutting_down)
    assert flags_before == (False, False)
    cancelled.cancel()
    assert cancelled.is_cancelled and not cancelled.is_shutting_down
    assert await handler(Order(id=2), cancelled) == "stopped early"
    assert cancelled.progress == []

    stopping = TestContext()
    stopping.shut_down()
    assert stopping.is_shutting_down and not stopping.is_cancelled
    assert await handler(Order(id=3), stopping) == "stopped early"


def test_defaults_and_sync_twins_from_any_thread() -> None:
    ctx = TestContext()
    assert ctx.payload is None and ctx.attempt == 1 and ctx.entity_id is None
    assert isinstance(ctx.job_id, str) and ctx.job_id
    ctx.log_sync("warning", "no loop here")
    ctx.update_progress_sync(10)
    ctx.touch_sync()
    thread = threading.Thread(target=ctx.log_sync, args=("debug", "from a thread"))
    thread.start()
    thread.join()
    assert ctx.logs == [("warn", "no loop here", None), ("debug", "from a thread", None)]
    assert ctx.progress == [10.0]
    assert ctx.touches == 1


async def test_the_sync_twins_work_inside_a_running_loop_too() -> None:
    ctx = TestContext()
    await asyncio.sleep(0)
    ctx.log_sync("info", "inside a loop")
    assert ctx.logs == [("info", "inside a loop", None)]


async def test_bad_levels_and_progress_are_refused_as_in_a_worker() -> None:
    ctx = TestContext()
    with pytest.raises(ValueError, match="log level"):
        await ctx.log("loud", "x")
    with pytest.raises(ValueError, match="progress"):
        await ctx.update_progress(101)
    assert ctx.logs == [] and ctx.progress == []
