"""Running a handler in this process: `async def` on the event loop, plain `def` in a thread."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from concurrent.futures import Executor
from typing import Any

from timecrisis.context import JobContext
from timecrisis.definitions import JobDefinition
from timecrisis.durations import format_duration
from timecrisis.errors import JobTimeoutError


async def run_in_process(
    definition: JobDefinition[Any],
    payload: Any,
    ctx: JobContext,
    executor: Executor | None,
) -> Any:
    """Run the handler and return its result; raise what it raises, or `JobTimeoutError`.

    A sync handler that overruns its timeout cannot be stopped: its thread is abandoned and keeps
    running until it returns (fork mode gives hard timeouts)."""
    timeout = definition.timeout_td
    if definition.is_async:
        awaitable = definition.handle(payload, ctx)
    else:
        # copy_context: a handler sees the contextvars of the worker (tracing ids, etc.).
        call = functools.partial(contextvars.copy_context().run, definition.handle, payload, ctx)
        awaitable = asyncio.get_running_loop().run_in_executor(executor, call)
    if timeout is None:
        return await awaitable
    try:
        async with asyncio.timeout(timeout.total_seconds()) as scope:
            return await awaitable
    except TimeoutError:
        if scope.expired():
            raise JobTimeoutError(
                f"the job exceeded its timeout of {format_duration(timeout)}"
            ) from None
        raise
