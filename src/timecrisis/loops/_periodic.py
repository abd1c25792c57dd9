"""A loop that runs a step every so often, wakes early when told to, and never dies of an error."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable


class ErrorBackoff:
    """Delays after consecutive failures: 0.1 s doubling to `cap`, reset by a success."""

    def __init__(self, cap: float = 5.0) -> None:
        self._cap = cap
        self._failures = 0

    def reset(self) -> None:
        self._failures = 0

    def next_delay(self) -> float:
        self._failures += 1
        return float(min(self._cap, 0.1 * 2.0 ** min(self._failures - 1, 16)))


async def wait_for_event(event: asyncio.Event, seconds: float) -> None:
    """Wait until `event` is set or `seconds` have passed.

    Not `asyncio.wait_for(event.wait(), ...)`: on Python 3.11 it swallows a cancellation that
    lands while the event is being set (it returns the inner result instead of raising), so a
    loop told to stop at that moment would carry on, and `stop()` would wait for it forever.
    `asyncio.timeout` keeps the cancellation."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


class PeriodicLoop:
    """Runs `step()` repeatedly. `step` returns how long to sleep before the next run (None: the
    default interval). `wake()` cuts a sleep short. An exception in `step` is logged and retried
    with backoff; only `stop()` ends the loop."""

    def __init__(
        self,
        name: str,
        step: Callable[[], Awaitable[float | None]],
        interval: float,
        logger: logging.Logger,
    ) -> None:
        self.name = name
        self._step = step
        self._interval = interval
        self._logger = logger
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._backoff = ErrorBackoff(cap=max(0.1, min(interval, 5.0)))
        self.iterations = 0
        # Set after every completed step; tests await it instead of sleeping.
        self.ran = asyncio.Event()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        # A cancellation lost inside a library call lets the step finish; the wake-up then
        # cuts its sleep short, and the loop ends at its next turn (see `_run`) instead of a
        # whole interval later. Seen at a graceful stop on PostgreSQL: the lease reaper's step
        # ran on to its COMMIT after the cancel, then slept its 30 s (the default interval).
        self._wake.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        # Runs while it is this loop's task: after stop() (or a restart) it ends at the next turn
        # even if a cancellation got lost in a library call.
        while asyncio.current_task() is self._task:
            self._wake.clear()
            try:
                delay = await self._step()
            except Exception as exc:
                delay = self._backoff.next_delay()
                self._logger.warning(
                    "%s loop failed (%s: %s); retrying in %.1fs",
                    self.name,
                    type(exc).__name__,
                    exc,
                    delay,
                    exc_info=self._logger.isEnabledFor(logging.DEBUG),
                )
            else:
                self._backoff.reset()
                self.iterations += 1
                self.ran.set()
                if delay is None:
                    delay = self._interval
            if delay > 0:
                await wait_for_event(self._wake, delay)
