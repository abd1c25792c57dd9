"""Running a handler in this process: `async def` on the event loop, plain `def` in a thread.

Sync handlers run on `HandlerThreads`, not on a fixed-size `ThreadPoolExecutor`: a thread whose
handler overran its `timeout` (or was abandoned by a stop or a lost lease) cannot be killed and
keeps running, and in a fixed pool every such thread is one worker less, until hung handlers
hold them all and every later sync job times out in the queue without ever running. Here a
handler never queues: it gets an idle thread or a new one (the worker's slots already bound how
many handlers run at once, so the threads are those slots plus the abandoned ones), and its
timeout counts from the moment it starts in that thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import timedelta
from typing import Any, TypeVar

from timecrisis.context import JobContext
from timecrisis.definitions import JobDefinition
from timecrisis.durations import format_duration
from timecrisis.errors import JobTimeoutError

T = TypeVar("T")

_Work = tuple[Callable[[], Any], "Future[Any]"]


class HandlerThreads:
    """Daemon threads for sync handlers, reused, never starved (see the module docstring).

    Shaped like `ThreadPoolExecutor` (one work queue; a submit that finds no idle thread starts
    one), without its size limit: the worker's slots already bound the handlers that run, so
    the only threads beyond them are abandoned ones, and those must not block new work.
    Daemon threads: an abandoned handler must keep neither `stop()` nor the interpreter's exit
    waiting (a `ThreadPoolExecutor` joins its threads at exit)."""

    def __init__(self, logger: logging.Logger, *, name_prefix: str = "timecrisis-job") -> None:
        self._logger = logger
        self._prefix = name_prefix
        self._lock = threading.Lock()
        self._work: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # one token per thread waiting for work
        self._closed = False
        self._started = 0
        self.threads = 0
        """Threads alive now (busy, idle or abandoned)."""
        self.abandoned = 0
        """Handlers abandoned while their thread still runs them."""

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        if self._closed:
            raise RuntimeError("the handler threads are shut down")
        future: Future[T] = Future()
        self._work.put((fn, future))
        if not self._idle.acquire(blocking=False):  # every thread is busy (or abandoned)
            self._spawn()
        return future

    def _spawn(self) -> None:
        with self._lock:
            self._started += 1
            self.threads += 1
            name = f"{self._prefix}-{self._started}"
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def _serve(self) -> None:
        try:
            while (work := self._work.get()) is not None:
                fn, future = work
                del work
                if future.set_running_or_notify_cancel():
                    self._run(fn, future)
                else:  # cancelled before it started: this thread is idle again at once
                    self._idle.release()
                del fn, future  # hold nothing of the handler while idle
                if self._closed:
                    return
        finally:
            with self._lock:
                self.threads -= 1

    def _run(self, fn: Callable[[], Any], future: Future[Any]) -> None:
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            # Idle again *before* answering: the task that gets the answer often submits the
            # next handler at once, and should find this thread, not start another.
            self._idle.release()
            future.set_exception(exc)
        else:
            self._idle.release()
            future.set_result(result)

    def abandon(self, future: Future[Any], what: str, why: str) -> None:
        """The task awaiting `future` gave up on it while its thread still runs the handler:
        say so, and count the thread until it returns."""
        began = time.monotonic()
        with self._lock:
            self.abandoned += 1
            count = self.abandoned
        self._logger.warning(
            "%s: %s; its thread is abandoned and still running (%d abandoned thread(s) now). "
            "A sync handler cannot be stopped: use fork mode for hard timeouts",
            what,
            why,
            count,
        )

        def returned(_: Future[Any]) -> None:
            with self._lock:
                self.abandoned -= 1
                left = self.abandoned
            self._logger.info(
                "%s: its abandoned thread returned after %.1fs (%d abandoned thread(s) left)",
                what,
                time.monotonic() - began,
                left,
            )

        future.add_done_callback(returned)

    def shutdown(self) -> None:
        """Idle threads exit now, busy ones when their handler returns; never waits."""
        self._closed = True
        with self._lock:
            alive = self.threads
        for _ in range(alive):
            self._work.put(None)


async def run_in_process(
    definition: JobDefinition[Any],
    payload: Any,
    ctx: JobContext,
    threads: HandlerThreads | None,
) -> Any:
    """Run the handler and return its result; raise what it raises, or `JobTimeoutError`.

    A sync handler that overruns its timeout cannot be stopped: its thread is abandoned and keeps
    running until it returns (fork mode gives hard timeouts)."""
    if definition.is_async:
        return await run_async(definition, payload, ctx)
    if threads is None:
        raise RuntimeError("sync handlers need the scheduler's handler threads (start())")
    return await run_in_thread(definition, payload, ctx, threads)


async def run_async(definition: JobDefinition[Any], payload: Any, ctx: JobContext) -> Any:
    """An `async def` handler on this loop, within its timeout."""
    timeout = definition.timeout_td
    if timeout is None:
        return await definition.handle(payload, ctx)
    return await _within(timeout, definition.handle(payload, ctx))


async def run_in_thread(
    definition: JobDefinition[Any], payload: Any, ctx: JobContext, threads: HandlerThreads
) -> Any:
    """A plain `def` handler in one of `threads`, its timeout counted from its start there."""
    timeout = definition.timeout_td
    # copy_context: a handler sees the contextvars of the worker (tracing ids, etc.).
    run = functools.partial(contextvars.copy_context().run, definition.handle, payload, ctx)
    if timeout is None:
        return await _in_thread(threads, run, ctx)
    return await _in_thread_within(threads, run, ctx, timeout)


async def _in_thread(threads: HandlerThreads, run: Callable[[], Any], ctx: JobContext) -> Any:
    future = threads.submit(run)
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:  # a stop or a lost lease: the thread goes on regardless
        if future.running():
            threads.abandon(future, f"job {ctx.job_id} ({ctx.job_type})", "its run was abandoned")
        raise


async def _in_thread_within(
    threads: HandlerThreads, run: Callable[[], Any], ctx: JobContext, timeout: timedelta
) -> Any:
    """The handler's timeout runs from its start in its thread, not from the submit: the
    thread arms the (until then unarmed) timeout scope as it begins."""
    loop = asyncio.get_running_loop()
    seconds = timeout.total_seconds()
    scope: asyncio.Timeout | None = None

    def arm(deadline: float) -> None:  # on the event loop
        if scope is not None:
            scope.reschedule(deadline)

    def call() -> Any:  # in the handler's thread
        loop.call_soon_threadsafe(arm, loop.time() + seconds)  # loop.time(): monotonic
        return run()

    future = threads.submit(call)
    what = f"job {ctx.job_id} ({ctx.job_type})"
    try:
        # No await between the submit and entering the scope: `arm` cannot run before it.
        async with asyncio.timeout(None) as scope:
            try:
                return await asyncio.wrap_future(future)
            finally:
                scope_done, scope = scope, None
    except TimeoutError:
        if not scope_done.expired():
            raise
        message = f"the job exceeded its timeout of {format_duration(timeout)}"
        if not future.done():
            threads.abandon(future, what, message)
        raise JobTimeoutError(message) from None
    except asyncio.CancelledError:
        if future.running():  # a stop or a lost lease: the thread goes on regardless
            threads.abandon(future, what, "its run was abandoned")
        raise


async def _within(timeout: timedelta, awaitable: Any) -> Any:
    try:
        async with asyncio.timeout(timeout.total_seconds()) as scope:
            return await awaitable
    except TimeoutError:
        if scope.expired():
            raise JobTimeoutError(
                f"the job exceeded its timeout of {format_duration(timeout)}"
            ) from None
        raise
