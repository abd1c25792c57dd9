"""Fork-mode handlers for the tests: module-level, so a child process imports them by name."""

from __future__ import annotations

import asyncio
import ctypes
import os
import resource
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel

from timecrisis import JobContext, NonRetryableError, Retry, Snooze

Kind = Literal["ok", "exit", "segv", "raise", "kill", "nonretryable"]
Handler = Callable[..., Any]


class Work(BaseModel):
    kind: Kind = "ok"
    n: int = 0


class Blocker(BaseModel):
    ignore_sigterm: bool = False
    cooperative: bool = False


class Seen(BaseModel):
    pid: int
    job_id: str
    job_type: str
    attempt: int
    entity_id: str | None
    payload: Work
    shutting_down: bool
    cancelled: bool


def _seen(data: Work, ctx: JobContext) -> Seen:
    return Seen(
        pid=os.getpid(),
        job_id=ctx.job_id,
        job_type=ctx.job_type,
        attempt=ctx.attempt,
        entity_id=ctx.entity_id,
        payload=data,
        shutting_down=ctx.is_shutting_down,
        cancelled=ctx.is_cancelled,
    )


def report_sync(data: Work, ctx: JobContext) -> Seen:
    ctx.log_sync("info", "starting", {"n": data.n})
    ctx.update_progress_sync(40)
    ctx.touch_sync()
    ctx.logger.warning("a record from the child's ctx.logger")
    ctx.log_sync("warning", "done")
    return _seen(data, ctx)


async def report_async(data: Work, ctx: JobContext) -> Seen:
    await ctx.log("info", "starting", {"n": data.n})
    await ctx.update_progress(40)
    await ctx.touch()
    await asyncio.sleep(0)
    ctx.logger.warning("a record from the child's ctx.logger")
    await ctx.log("warning", "done")
    return _seen(data, ctx)


def crash(data: Work, ctx: JobContext) -> int:
    """Ends the way `data.kind` says; `ok` returns `data.n`."""
    if data.kind == "exit":
        os._exit(3)
    if data.kind == "segv":
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file in the test directory
        ctypes.string_at(0)  # a real segmentation fault, in native code
    if data.kind == "kill":  # what the kernel's OOM killer does
        os.kill(os.getpid(), signal.SIGKILL)
    if data.kind == "raise":
        raise ValueError(f"bad row {data.n}")
    if data.kind == "nonretryable":
        raise NonRetryableError("give up")
    return data.n


def start_a_process(data: Work, ctx: JobContext) -> int:
    """Leaves a subprocess running behind it (in its process group) and returns its pid."""
    process = subprocess.Popen(["sleep", "60"])
    return process.pid


def block(data: Blocker, ctx: JobContext) -> str:
    """Logs its pid, then runs until told to stop (if cooperative) or until killed."""
    if data.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ctx.log_sync("info", "pid", {"pid": os.getpid()})
    while True:
        if data.cooperative and ctx.is_shutting_down:
            return "saw the shutdown"
        time.sleep(0.02)


class Control(BaseModel):
    action: Literal["retry", "retry-backoff", "snooze"]
    marker: str  # a file the first run creates: a snooze keeps the attempt number


def control(data: Control, ctx: JobContext) -> int:
    """Raises `Retry`/`Snooze` on its first run (in the child), then returns its attempt."""
    if os.path.exists(data.marker):
        return ctx.attempt
    with open(data.marker, "w") as marker:
        marker.write(str(os.getpid()))
    if data.action == "retry":
        raise Retry(delay="300ms", reason="upstream busy")
    if data.action == "retry-backoff":
        raise Retry()
    raise Snooze("300ms")
