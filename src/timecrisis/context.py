"""`JobContext`: what a handler gets besides its payload."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

from timecrisis.models import JsonValue, LogLevel

_T = TypeVar("_T")

_LEVELS: dict[str, LogLevel] = {
    "debug": "debug",
    "info": "info",
    "warn": "warn",
    "warning": "warn",
    "error": "error",
}
_STDLIB_LEVELS: dict[LogLevel, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}


class ContextOps(Protocol):
    """Where a context's calls go: straight to the storage (in-process), or over a pipe to the
    parent process (fork mode)."""

    async def log(
        self, level: LogLevel, message: str, metadata: dict[str, JsonValue] | None
    ) -> None: ...

    async def touch(self) -> None: ...

    async def update_progress(self, percent: float) -> None: ...


class JobState:
    """Flags the worker flips while a handler runs; shared by reference with the context."""

    __slots__ = ("cancelled", "lease_lost", "shutting_down", "terminate")

    def __init__(self) -> None:
        self.shutting_down = False
        self.cancelled = False
        self.lease_lost = False
        # `cancel_job(terminate=True)`: interrupt the handler, kill a fork-mode child at once.
        self.terminate = False


def normalize_level(level: str) -> LogLevel:
    try:
        return _LEVELS[level]
    except KeyError:
        raise ValueError(
            f"log level must be one of debug, info, warn, warning, error; got {level!r}"
        ) from None


def check_percent(percent: float) -> float:
    if isinstance(percent, bool) or not isinstance(percent, int | float):
        raise ValueError(f"progress must be a number between 0 and 100, got {percent!r}")
    if not math.isfinite(percent) or not 0 <= percent <= 100:
        raise ValueError(f"progress must be between 0 and 100, got {percent!r}")
    return float(percent)


class JobContext:
    """The handler's view of its job and its worker.

    The job's lease is renewed automatically while the handler runs; `touch()` is for code that
    wants to prove liveness explicitly. A plain `def` handler runs in a thread and cannot
    `await`: it uses the `*_sync` twins (`log_sync`, `touch_sync`, `update_progress_sync`).
    """

    def __init__(
        self,
        *,
        job_id: str,
        job_type: str,
        payload: Any,
        attempt: int,
        entity_id: str | None,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
        ops: ContextOps,
        state: JobState,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.job_id = job_id
        self.job_type = job_type
        self.payload = payload
        self.attempt = attempt
        self.entity_id = entity_id
        self.logger = logger
        self._ops = ops
        self._state = state
        self._loop = loop

    @property
    def is_shutting_down(self) -> bool:
        """True once the worker is stopping: finish soon or save your place."""
        return self._state.shutting_down

    @property
    def is_cancelled(self) -> bool:
        """True once `cancel_job` targeted this running job (or its lease was lost): stop early.
        The job ends `canceled` when the handler returns, or raises: a canceled job never runs
        again (`retry_job` aside). `cancel_job(id, terminate=True)` does not wait for that: an
        async handler gets `asyncio.CancelledError`, a fork-mode child is killed."""
        return self._state.cancelled or self._state.lease_lost

    async def log(
        self, level: str, message: str, metadata: dict[str, JsonValue] | None = None
    ) -> None:
        """Persist a log line with the job's current run (and pass it to `logger`)."""
        normalized = normalize_level(level)
        self.logger.log(_STDLIB_LEVELS[normalized], "%s", message)
        await self._ops.log(normalized, str(message), metadata)

    async def touch(self) -> None:
        """Renew the job's lease now."""
        await self._ops.touch()

    async def update_progress(self, percent: float) -> None:
        """Record progress (0..100) on the job and its run."""
        await self._ops.update_progress(check_percent(percent))

    # Twins for sync handlers, which run in a worker thread with no event loop of their own.

    def log_sync(
        self, level: str, message: str, metadata: dict[str, JsonValue] | None = None
    ) -> None:
        self._run_from_thread(self.log(level, message, metadata))

    def touch_sync(self) -> None:
        self._run_from_thread(self.touch())

    def update_progress_sync(self, percent: float) -> None:
        check_percent(percent)  # fail in the caller's thread, before crossing over
        self._run_from_thread(self.update_progress(percent))

    def _run_from_thread(self, coro: Coroutine[Any, Any, _T]) -> _T:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            coro.close()
            raise RuntimeError("the *_sync methods are for plain `def` handlers; use `await`")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()
