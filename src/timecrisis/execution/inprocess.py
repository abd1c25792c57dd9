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

# An idle thread exits after this long without work (a burst of sync jobs leaves no crowd).
_IDLE_EXIT = 60.0

_Work = tuple[Callable[[], Any], "Future[Any]"]


class HandlerThreads:
    """Daemon threads for sync handlers, reused, never starved (see the module docstring).

    Daemon threads: an abandoned handler must keep neither `stop()` nor the interpreter's exit
    waiting (a `ThreadPoolExecutor` joins its threads at exit)."""

    def __init__(self, logger: logging.Logger, *, name_prefix: str = "timecrisis-job") -> None:
        self._logger = logger
        self._prefix = name_prefix
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue[_Work | None]] = []
        self._closed = False
        self._started = 0
        self.threads = 0
        """Threads alive now (busy, idle or abandoned)."""
        self.abandoned = 0
        """Handlers abandoned while their thread still runs them."""

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the handler threads are shut down")
            inbox = self._idle.pop() if self._idle else self._spawn()
        inbox.put((fn, future))
        return future

    def _spawn(self) -> queue.SimpleQueue[_Work | None]:
        inbox: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._started += 1
        self.threads += 1
        thread = threading.Thread(
            target=self._serve,
            args=(inbox,),
            name=f"{self._prefix}-{self._started}",
            daemon=True,
        )
        thread.start()
        return inbox

    def _serve(self, inbox: queue.SimpleQueue[_Work | None]) -> None:
        try:
            while True:
                try:
                    work = inbox.get(timeout=_IDLE_EXIT)
                except queue.Empty:
                    with self._lock:
                        if inbox in self._idle:  # nobody handed it work meanwhile: retire
                            self._idle.remove(inbox)
                            return
                    continue  # work is on its way
                if work is None:
                    return
                fn, future = work
                del work
                if not future.set_running_or_notify_cancel():
                    if not self._back_to_idle(inbox):
                        return
                    continue
                error: BaseException | None = None
                result: Any = None
                try:
                    result = fn()
                except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
                    error = exc
                # Idle again *before* answering: the task that gets the answer often submits
                # the next handler at once, and should find this thread, not start another.
                keep_going = self._back_to_idle(inbox)
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)
                del fn, future, result, error  # hold nothing of the handler while idle
                if not keep_going:
                    return
        finally:
            with self._lock:
                self.threads -= 1

    def _back_to_idle(self, inbox: queue.SimpleQueue[_Work | None]) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._idle.append(inbox)
            return True

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
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for inbox in idle:
            inbox.put(None)


async def run_in_process(
    definition: JobDefinition[Any],
    payload: Any,
    ctx: JobContext,
    threads: HandlerThreads | None,
) -> Any:
    """Run the handler and return its result; raise what it raises, or `JobTimeoutError`.

    A sync handler that overruns its timeout cannot be stopped: its thread is abandoned and keeps
    running until it returns (fork mode gives hard timeouts)."""
    timeout = definition.timeout_td
    if definition.is_async:
        if timeout is None:
            return await definition.handle(payload, ctx)
        return await _within(timeout, definition.handle(payload, ctx))
    if threads is None:
        raise RuntimeError("sync handlers need the scheduler's handler threads (start())")
    loop = asyncio.get_running_loop()
    started = asyncio.Event()
    # copy_context: a handler sees the contextvars of the worker (tracing ids, etc.).
    run = functools.partial(contextvars.copy_context().run, definition.handle, payload, ctx)

    def call() -> Any:
        if timeout is not None:
            loop.call_soon_threadsafe(started.set)
        return run()

    future = threads.submit(call)
    waiting = asyncio.wrap_future(future)
    what = f"job {ctx.job_id} ({ctx.job_type})"
    try:
        if timeout is None:
            return await waiting
        # The timeout runs from the handler's start in its thread, not from the submit.
        await _started_or_done(started, waiting)
        return await _within(timeout, waiting)
    except JobTimeoutError as exc:
        if not future.done():
            threads.abandon(future, what, str(exc))
        raise
    except asyncio.CancelledError:
        waiting.cancel()  # a handler that has not started yet never will
        if future.running():  # a stop or a lost lease: the thread goes on regardless
            threads.abandon(future, what, "its run was abandoned")
        raise


async def _started_or_done(started: asyncio.Event, waiting: asyncio.Future[Any]) -> None:
    if started.is_set() or waiting.done():
        return
    began = asyncio.ensure_future(started.wait())
    try:
        await asyncio.wait([began, waiting], return_when=asyncio.FIRST_COMPLETED)
    finally:
        began.cancel()


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
