"""How an attempt's handler runs: the `Executor` of its job type, chosen once, at registration.

Three of them, one per way a handler can run:

- `AsyncExecutor`: an `async def` handler, awaited on the worker's event loop (its timeout is an
  `asyncio.timeout`; cancelling the awaiting task interrupts it).
- `ThreadExecutor`: a plain `def` handler, in one of the worker's `HandlerThreads` (a timeout or
  a cancellation abandons the thread, which keeps running: it cannot be interrupted).
- `ForkExecutor` (`execution/forked.py`): `fork_mode=True`, a fresh child process per attempt
  (killed by its supervisor, through `JobState.terminate`, never through task cancellation).

The worker (`loops/`) only sees the protocol: `run(definition, job, ctx, state)` and whether
cancelling the awaiting task interrupts the handler.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from timecrisis.context import JobContext, JobState
from timecrisis.definitions import JobDefinition
from timecrisis.execution.inprocess import HandlerThreads, run_async, run_in_thread
from timecrisis.models import Job


class Executor(Protocol):
    # Whether cancelling the task that awaits `run` stops the handler (`cancel_job(terminate=
    # True)` relies on it): true for a coroutine on this loop; a thread cannot be stopped, and
    # a fork-mode child is killed through `state.terminate` so its exit status is collected.
    interruptible: ClassVar[bool]

    async def run(
        self, definition: JobDefinition[Any], job: Job, ctx: JobContext, state: JobState
    ) -> Any:
        """Run the handler on `ctx.payload`; return its result, raise what it raises (or
        `JobTimeoutError` once its timeout passed)."""
        ...


class AsyncExecutor:
    interruptible: ClassVar[bool] = True

    async def run(
        self, definition: JobDefinition[Any], job: Job, ctx: JobContext, state: JobState
    ) -> Any:
        return await run_async(definition, ctx.payload, ctx)


class ThreadExecutor:
    """Sync handlers, on the threads the scheduler opens at `start()` and closes at `stop()`."""

    interruptible: ClassVar[bool] = False

    def __init__(self) -> None:
        self.threads: HandlerThreads | None = None

    def open(self, threads: HandlerThreads) -> None:
        self.threads = threads

    def close(self) -> None:
        """Abandoned sync handlers (timeouts) may still run: never waits for them."""
        threads, self.threads = self.threads, None
        if threads is not None:
            threads.shutdown()

    async def run(
        self, definition: JobDefinition[Any], job: Job, ctx: JobContext, state: JobState
    ) -> Any:
        if self.threads is None:
            raise RuntimeError("sync handlers need the scheduler's handler threads (start())")
        return await run_in_thread(definition, ctx.payload, ctx, self.threads)
