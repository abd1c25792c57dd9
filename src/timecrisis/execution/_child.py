"""The child side of fork mode: what runs inside a process the fork server forked for one job.

`run(sock)` reads the start message, takes on the worker's `sys.path` and working directory,
loads the handler and the schema by name, validates the payload, runs the handler with a
`JobContext` whose calls travel to the worker as messages, reports the result or the error, and
returns the exit code. Sync handlers run directly on the main thread (no event loop, no thread
pool); async ones under `asyncio.run`.

A daemon thread listens to the worker: `shutdown` and `cancel` flip `ctx.is_shutting_down` and
`ctx.is_cancelled`; the end of the stream means the worker is gone (its lease will expire and
another worker will run the job), so the child kills itself and its process group at once
rather than finish work nobody can record.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import faulthandler
import inspect
import logging
import os
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, NoReturn, cast

from pydantic import BaseModel, ValidationError

from timecrisis.context import JobContext, JobState, check_percent, normalize_level
from timecrisis.definitions import to_json_result
from timecrisis.errors import NonRetryableError, Retry, Snooze
from timecrisis.execution._preload import already_loaded, process_resources
from timecrisis.execution._protocol import (
    Message,
    ProtocolError,
    encode_frame,
    read_frame_blocking,
)
from timecrisis.execution._targets import load_helper, load_object
from timecrisis.job_type import JobType
from timecrisis.models import JsonValue, LogLevel

EXIT_WORKER_GONE = 75
"""Exit status of a child whose worker went away (nobody reads it; it shows in `ps`/logs)."""


class Channel:
    """The child's end of its socket. Sends may come from any thread the handler starts."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._send_lock = threading.Lock()

    def send(self, message: Message) -> None:
        frame = encode_frame(message)  # a TypeError here (bad metadata) is the caller's error
        try:
            with self._send_lock:
                self._sock.sendall(frame)
        except OSError:
            _worker_gone()

    def receive(self) -> Message | None:
        try:
            return read_frame_blocking(self._sock)
        except (OSError, ProtocolError):
            return None


def _worker_gone() -> NoReturn:
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    # Only a process-group leader may take its group down: otherwise the group is the fork
    # server's, and killing it would kill the server and its other children.
    if os.getpgrp() == os.getpid():
        os.killpg(0, signal.SIGKILL)
    os._exit(EXIT_WORKER_GONE)


class _ChildOps:
    """`ContextOps` for the child: every call becomes a message to the worker, which writes it
    to the store. Fire-and-forget (the `*_now` methods serve the sync twins): the stream keeps
    them in order, before the job's outcome."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    def log_now(self, level: LogLevel, message: str, metadata: dict[str, JsonValue] | None) -> None:
        self._channel.send({"t": "log", "level": level, "message": message, "metadata": metadata})

    def touch_now(self) -> None:
        self._channel.send({"t": "touch"})

    def update_progress_now(self, percent: float) -> None:
        self._channel.send({"t": "progress", "percent": percent})

    async def log(
        self, level: LogLevel, message: str, metadata: dict[str, JsonValue] | None
    ) -> None:
        self.log_now(level, message, metadata)

    async def touch(self) -> None:
        self.touch_now()

    async def update_progress(self, percent: float) -> None:
        self.update_progress_now(percent)


class ChildJobContext(JobContext):
    """The context a fork-mode handler gets. Same interface as in the worker; its calls are
    messages to the worker. The `*_sync` twins work from any thread of the child, as long as no
    event loop runs in it (the same rule as in the worker: inside `async def`, use `await`)."""

    def __init__(
        self,
        *,
        channel: Channel,
        state: JobState,
        job: dict[str, Any],
        payload: Any,
        logger: logging.Logger,
    ) -> None:
        self._child_ops = _ChildOps(channel)
        super().__init__(
            job_id=job["id"],
            job_type=job["type"],
            payload=payload,
            attempt=job["attempt"],
            entity_id=job["entity_id"],
            logger=logger,
            ops=self._child_ops,
            state=state,
            # Never read: every method of JobContext that uses the loop is overridden here.
            loop=cast("asyncio.AbstractEventLoop", None),
        )

    async def log(
        self, level: str, message: str, metadata: dict[str, JsonValue] | None = None
    ) -> None:
        # No local `logger` call: the worker logs the line when it persists it.
        self._child_ops.log_now(normalize_level(level), str(message), metadata)

    def log_sync(
        self, level: str, message: str, metadata: dict[str, JsonValue] | None = None
    ) -> None:
        _refuse_inside_a_loop()
        self._child_ops.log_now(normalize_level(level), str(message), metadata)

    def touch_sync(self) -> None:
        _refuse_inside_a_loop()
        self._child_ops.touch_now()

    def update_progress_sync(self, percent: float) -> None:
        _refuse_inside_a_loop()
        self._child_ops.update_progress_now(check_percent(percent))


def _refuse_inside_a_loop() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError("the *_sync methods are for plain `def` handlers; use `await`")


class _ForwardingHandler(logging.Handler):
    """Sends `ctx.logger` records to the worker, which emits them on its own job logger."""

    def __init__(self, channel: Channel) -> None:
        super().__init__()
        self._channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            self._channel.send({"t": "record", "level": record.levelno, "message": text})
        except Exception:  # noqa: BLE001 - logging must never break the handler
            self.handleError(record)


def _job_logger(channel: Channel, job_type: str) -> logging.Logger:
    # Everything goes to the worker, which filters with its own configuration; nothing is
    # written here (the child has no logging setup of its own).
    logger = logging.getLogger(f"timecrisis.job.{job_type}")
    logger.handlers[:] = [_ForwardingHandler(channel)]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


def _error_report(exc: BaseException, phase: str) -> Message:
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the failure
        message = f"<unprintable {type(exc).__name__}>"
    return {
        "t": "error",
        "phase": phase,
        "type": type(exc).__name__,
        "module": type(exc).__module__,
        "message": message,
        "traceback": _traceback_text(exc),
        "pid": os.getpid(),
        "non_retryable": isinstance(exc, NonRetryableError),
        **_control(exc),
    }


def _control(exc: BaseException) -> Message:
    """A handler's `Retry`/`Snooze` for the worker: which one and its delay, in whole
    microseconds (exact, unlike float seconds). Nothing for any other exception."""
    if isinstance(exc, Snooze):
        return {"control": "snooze", "delay_us": _microseconds(exc.delay)}
    if isinstance(exc, Retry):
        delay = None if exc.delay is None else _microseconds(exc.delay)
        return {"control": "retry", "delay_us": delay}
    return {}


def _microseconds(value: timedelta) -> int:
    return value // timedelta(microseconds=1)


def _traceback_text(exc: BaseException) -> str:
    # Start at the handler's frame: the frames of this module are noise to the reader.
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _listen(channel: Channel, state: JobState) -> None:
    while True:
        message = channel.receive()
        if message is None:
            _worker_gone()
        kind = message["t"]
        if kind == "shutdown":
            state.shutting_down = True
        elif kind == "cancel":
            state.cancelled = True


def _is_async(handler: object) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - async callable objects
    )


def _call(handler: Any, payload: BaseModel, ctx: JobContext) -> Any:
    if _is_async(handler):
        return asyncio.run(handler(payload, ctx))
    result = handler(payload, ctx)
    if inspect.isawaitable(result):  # e.g. a plain function that returns a coroutine
        return asyncio.run(_await(result))
    return result


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def run(sock: socket.socket) -> int:
    """Run the job the worker sends over `sock`; return the process exit status."""
    with contextlib.suppress(Exception):  # no usable stderr: go without
        faulthandler.enable()  # a segfault prints the Python stack to stderr before dying
    channel = Channel(sock)
    start = channel.receive()
    if start is None or start["t"] != "start":
        return EXIT_WORKER_GONE
    state = JobState()
    state.shutting_down = bool(start["shutting_down"])
    state.cancelled = bool(start["cancelled"])
    # A bare thread, not a `threading.Thread`: its bookkeeping costs a forked child more (in
    # pages copied on write) than the whole rest of a no-op job, and the child ends with
    # os._exit, so nothing ever joins it.
    _thread.start_new_thread(_listen, (channel, state))

    job: dict[str, Any] = start["job"]
    before: tuple[int, int] | None = None  # threads and fds, if this child imports the handler
    try:
        # The worker's view of imports: relative sys.path entries resolve against its directory.
        os.chdir(start["cwd"])
        sys.path[:] = start["sys_path"]
        if start["helper_path"] is not None:
            handler = load_helper(start["helper_path"])
        else:
            if not already_loaded(start):
                before = process_resources()
            handler = load_object(start["handler"], start["main"])
            # `@scheduler.job` bound the module's name to a JobType: run what it wraps.
            if isinstance(handler, JobType):
                handler = handler.definition.handle
        schema = cast("type[BaseModel]", load_object(start["schema"], start["main"]))
    except Exception as exc:  # noqa: BLE001 - reported to the worker, which fails the attempt
        channel.send(_error_report(exc, "load"))
        return 0
    if before is not None and process_resources() == before:
        channel.send({"t": "loaded_cleanly"})  # the worker may have the fork server preload it
    try:
        payload = schema.model_validate(job["payload"])
    except ValidationError as exc:
        channel.send(_error_report(exc, "payload"))
        return 0
    ctx = ChildJobContext(
        channel=channel,
        state=state,
        job=job,
        payload=payload,
        logger=_job_logger(channel, job["type"]),
    )
    try:
        value = _call(handler, payload, ctx)
    except Exception as exc:  # noqa: BLE001 - reported to the worker, which fails the attempt
        channel.send(_error_report(exc, "handler"))
        return 0
    stored, ok = to_json_result(value)
    try:
        channel.send({"t": "result", "value": stored, "stored": ok, "type": type(value).__name__})
    except ValueError as exc:  # larger than a message may be
        channel.send(_error_report(exc, "handler"))
    return 0
