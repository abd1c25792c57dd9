"""Helpers for testing your jobs (README, "Testing your jobs").

- `TestContext`: a `JobContext` for calling a handler directly, `await send_email(data, ctx)`,
  with no store and no worker. It records what the handler reports: `.logs` as
  `(level, message, metadata)` tuples, `.progress` as floats, `.touches` as a count; `.cancel()`
  and `.shut_down()` set `is_cancelled` and `is_shutting_down`.
- `await scheduler.drain()` (on `JobScheduler`) runs the jobs due in a real store, retries
  included, and returns the finished ones.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar, cast

from timecrisis.context import JobContext, JobState
from timecrisis.models import JsonValue, LogLevel

__all__ = ["TestContext"]

_T = TypeVar("_T")

LogRecord = tuple[LogLevel, str, dict[str, JsonValue] | None]


class _Recorder:
    """The `ContextOps` of a `TestContext`: keeps every call instead of storing it."""

    def __init__(self) -> None:
        self.logs: list[LogRecord] = []
        self.progress: list[float] = []
        self.touches = 0

    async def log(
        self, level: LogLevel, message: str, metadata: dict[str, JsonValue] | None
    ) -> None:
        self.logs.append((level, message, metadata))

    async def touch(self) -> None:
        self.touches += 1

    async def update_progress(self, percent: float) -> None:
        self.progress.append(percent)


class TestContext(JobContext):
    """A `JobContext` that records instead of storing, for calling handlers in tests.

    Levels and progress are checked as in a worker (`ctx.log("loud", ...)` and
    `update_progress(101)` raise `ValueError`); levels are recorded normalized (`"warning"` as
    `"warn"`). The `*_sync` twins work from any thread, with or without an event loop."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        payload: Any = None,
        *,
        job_id: str | None = None,
        attempt: int = 1,
        entity_id: str | None = None,
        job_type: str = "test",
        logger: logging.Logger | None = None,
    ) -> None:
        self._recorder = _Recorder()
        super().__init__(
            job_id=job_id if job_id is not None else str(uuid.uuid4()),
            job_type=job_type,
            payload=payload,
            attempt=attempt,
            entity_id=entity_id,
            logger=logger if logger is not None else logging.getLogger("timecrisis.testing"),
            ops=self._recorder,
            state=JobState(),
            # Used only by the *_sync twins, which this class runs inline (below).
            loop=cast("asyncio.AbstractEventLoop", None),
        )

    @property
    def logs(self) -> list[LogRecord]:
        return self._recorder.logs

    @property
    def progress(self) -> list[float]:
        return self._recorder.progress

    @property
    def touches(self) -> int:
        return self._recorder.touches

    def cancel(self) -> None:
        """What `cancel_job` does to a running job: `is_cancelled` becomes True."""
        self._state.cancelled = True

    def shut_down(self) -> None:
        """What a stopping worker does: `is_shutting_down` becomes True."""
        self._state.shutting_down = True

    def _run_from_thread(self, coro: Coroutine[Any, Any, _T]) -> _T:
        # The recorder never waits, so the coroutine finishes in its first step: run it here,
        # in whatever thread the handler runs, instead of hopping to a worker's loop.
        try:
            coro.send(None)
        except StopIteration as done:
            result: _T = done.value
            return result
        coro.close()
        raise AssertionError("a TestContext call suspended")  # pragma: no cover
