"""`HandlerThreads` and `run_in_process` for plain `def` handlers: a timeout counts from the
handler's start in its thread, abandoned threads are counted and never cost capacity, idle
threads are reused, and nothing here keeps the interpreter alive."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel

from timecrisis import JobContext, JobDefinition
from timecrisis.context import JobState
from timecrisis.errors import JobTimeoutError
from timecrisis.execution.inprocess import HandlerThreads, run_in_process

T = TypeVar("T")
LOGGER = logging.getLogger("timecrisis.test")


class Empty(BaseModel):
    pass


class _NoOps:
    async def log(self, *args: Any) -> None: ...
    async def touch(self) -> None: ...
    async def update_progress(self, percent: float) -> None: ...


def _ctx(job_id: str = "j1") -> JobContext:
    return JobContext(
        job_id=job_id,
        job_type="sync",
        payload=Empty(),
        attempt=1,
        entity_id=None,
        logger=LOGGER,
        ops=_NoOps(),
        state=JobState(),
        loop=asyncio.get_running_loop(),
    )


def _definition(handle: Callable[[Empty, JobContext], Any], timeout: str | None) -> Any:
    return JobDefinition(
        type="sync", schema=Empty, handle=handle, concurrency=None, timeout=timeout
    )


class SlowToStart(HandlerThreads):
    """Threads that take `delay` seconds to pick a handler up, as a busy machine would."""

    def __init__(self, delay: float) -> None:
        super().__init__(LOGGER)
        self.delay = delay

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        def later() -> T:
            time.sleep(self.delay)
            return fn()

        return super().submit(later)


async def test_the_timeout_counts_from_the_handler_start_not_its_submit() -> None:
    threads = SlowToStart(delay=0.5)
    try:
        # Runs 0.2 s, within its 0.4 s timeout; from the submit it would be 0.7 s.
        def handle(data: Empty, ctx: JobContext) -> str:
            time.sleep(0.2)
            return "done"

        definition = _definition(handle, "400ms")
        assert await run_in_process(definition, Empty(), _ctx(), threads) == "done"
    finally:
        threads.shutdown()


async def test_an_overrun_abandons_the_thread_counts_it_and_the_next_handler_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="timecrisis")
    threads = HandlerThreads(LOGGER)
    release = threading.Event()
    try:
        hung = _definition(lambda data, ctx: release.wait(10), "100ms")
        for job_id in ("a", "b"):
            with pytest.raises(JobTimeoutError, match="exceeded its timeout of 100ms"):
                await run_in_process(hung, Empty(), _ctx(job_id), threads)
        assert threads.abandoned == 2
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings[-1].startswith("job b (sync): the job exceeded its timeout of 100ms")
        assert "(2 abandoned thread(s) now)" in warnings[-1]

        healthy = _definition(lambda data, ctx: "fine", "1s")
        assert await run_in_process(healthy, Empty(), _ctx("c"), threads) == "fine"
        assert threads.threads == 3  # the two abandoned ones and a fresh one
    finally:
        release.set()

    async def returned() -> bool:
        return threads.abandoned == 0

    async with asyncio.timeout(5):
        while not await returned():
            await asyncio.sleep(0.01)
    threads.shutdown()


async def test_idle_threads_are_reused_and_daemons() -> None:
    threads = HandlerThreads(LOGGER)
    names: set[str] = set()

    def handle(data: Empty, ctx: JobContext) -> None:
        assert threading.current_thread().daemon
        names.add(threading.current_thread().name)

    try:
        for _ in range(20):
            await run_in_process(_definition(handle, None), Empty(), _ctx(), threads)
        assert len(names) == 1 and threads.threads == 1
    finally:
        threads.shutdown()

    async def gone() -> bool:
        return threads.threads == 0

    async with asyncio.timeout(5):
        while not await gone():
            await asyncio.sleep(0.01)
    with pytest.raises(RuntimeError, match="shut down"):
        threads.submit(lambda: None)
