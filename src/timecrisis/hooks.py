"""Event hooks: user callbacks that may be sync or async and must never break a worker loop."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from timecrisis.models import Job

JobHook: TypeAlias = Callable[[Job], Awaitable[None] | None]
JobFailedHook: TypeAlias = Callable[[Job, BaseException], Awaitable[None] | None]
LeadershipHook: TypeAlias = Callable[[], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class Hooks:
    on_job_started: JobHook | None = None
    on_job_completed: JobHook | None = None
    on_job_failed: JobFailedHook | None = None
    on_leadership_acquired: LeadershipHook | None = None
    on_leadership_lost: LeadershipHook | None = None


async def call_hook(
    logger: logging.Logger, name: str, hook: Callable[..., Any] | None, *args: Any
) -> None:
    """Call `hook(*args)`, awaiting it if it returns an awaitable. Its exceptions are logged and
    swallowed: a broken hook must never stop a loop or fail a job."""
    if hook is None:
        return
    try:
        result = hook(*args)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        logger.exception("hook %s raised %s: %s", name, type(exc).__name__, exc)
