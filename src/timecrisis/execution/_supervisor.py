"""Watching one fork-mode child from the worker, from its start message to its exit status.

Three things are awaited at once: the child's messages (log, record, progress and touch are
forwarded to the job's context as they come; `result` or `error` ends the run), the child's
exit status (from the fork server), and the job's flags (polled: `shutting_down` is passed on
to the child, `cancelled` and a lost lease terminate it). The lease itself is renewed by the
worker's renewal loop like any running job's, so a child that is busy, blocked or spinning in
native code can never lose its lease by starving an event loop: it has none in common with the
worker.

Terminating a child means SIGTERM to its process group, a grace period, then SIGKILL, and
always waiting for the exit status, so no child outlives its attempt. That covers a timeout, a
`cancel_job`, a lost lease and `stop()` (which cancels the attempt's task when it gives up
waiting): a second cancellation while terminating skips the grace period and kills at once, and
so does `cancel_job(terminate=True)` (`state.terminate`): SIGKILL without SIGTERM first, or
at once if it comes during the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from timecrisis.context import JobContext, JobState
from timecrisis.durations import format_duration
from timecrisis.errors import JobTimeoutError, NonRetryableError
from timecrisis.execution._protocol import Message, ProtocolError, encode_frame, read_frame
from timecrisis.execution.fork_errors import (
    Control,
    ForkedProcessError,
    describe_exit,
    handler_error,
)
from timecrisis.execution.fork_server import ForkedChild
from timecrisis.models import FailureKind, JsonValue

# How often the job's flags (cancel, shutdown, lost lease) are looked at. They are plain
# attributes flipped by the worker, not events; 50 ms is invisible next to a process's life.
FLAG_POLL_INTERVAL = 0.05

# After SIGKILL, how long to wait for the exit status before giving up (a process stuck in
# uninterruptible I/O). The worker's stop() waits 5 s for cancelled attempts in all.
_KILL_WAIT = 2.0

_LOG_LEVELS = frozenset({"debug", "info", "warn", "error"})


class ChildSupervisor:
    def __init__(
        self,
        child: ForkedChild,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        ctx: JobContext,
        state: JobState,
        logger: logging.Logger,
        *,
        grace: float,
        on_loaded_cleanly: Callable[[], None] = lambda: None,
    ) -> None:
        self._child = child
        self._reader = reader
        self._writer = writer
        self._ctx = ctx
        self._state = state
        self._logger = logger
        self._grace = grace
        self._on_loaded_cleanly = on_loaded_cleanly

    async def run(self, start: Message, timeout: timedelta | None) -> JsonValue:
        """The handler's result; raises what the attempt failed with."""
        pump = asyncio.ensure_future(self._pump())
        watch = asyncio.ensure_future(self._watch_flags())
        exited = self._child.exit_code
        first: set[asyncio.Future[Any]] = {pump, watch, exited}
        try:
            self._send(start)  # inside the try: even a payload too large to send ends the child
            try:
                seconds = None if timeout is None else timeout.total_seconds()
                async with asyncio.timeout(seconds) as scope:
                    await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
            except TimeoutError:
                if timeout is None or not scope.expired():
                    raise
                await self._terminate()
                raise JobTimeoutError(
                    f"the job exceeded its timeout of {format_duration(timeout)}; "
                    "its child process was terminated"
                ) from None
            if pump.done():
                report = await self._report_of(pump)
                await self._exit_or_terminate()
                if report is not None:
                    return await self._outcome(report)
                raise ForkedProcessError(self._exit_description())
            if watch.done():  # cancel_job, or a lost lease: the child must stop now
                self._send({"t": "cancel"})
                await self._terminate()
                return None
            # The child exited first: its last messages may still be in the socket.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._grace):
                    await asyncio.wait({pump})
            report = await self._report_of(pump) if pump.done() else None
            if report is not None:
                return await self._outcome(report)
            raise ForkedProcessError(self._exit_description())
        finally:
            await self._clean_up(pump, watch)

    # ---- messages ----------------------------------------------------------------------------

    def _send(self, message: Message) -> None:
        if not self._writer.is_closing():
            self._writer.write(encode_frame(message))

    async def _pump(self) -> Message | None:
        """Forward the child's messages until its report (`result`/`error`); None if the
        stream ends without one (the child died)."""
        while True:
            try:
                message = await read_frame(self._reader)
            except ConnectionError:
                return None
            if message is None or message["t"] in ("result", "error"):
                return message
            await self._forward(message)

    async def _forward(self, message: Message) -> None:
        kind = message["t"]
        ctx = self._ctx
        try:
            if kind == "log":
                level = message["level"] if message["level"] in _LOG_LEVELS else "info"
                call = ctx.log(level, str(message["message"]), message.get("metadata"))
            elif kind == "progress":
                call = ctx.update_progress(float(message["percent"]))
            elif kind == "touch":
                call = ctx.touch()
            elif kind == "record":
                ctx.logger.log(int(message["level"]), "%s", message["message"])
                return
            elif kind == "loaded_cleanly":
                self._on_loaded_cleanly()
                return
            else:
                return  # unknown kinds are ignored: a newer child may say more than we know
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"a malformed {kind!r} message: {exc}") from exc
        try:
            await call
        except Exception as exc:  # noqa: BLE001 - a store hiccup must not end the run
            self._logger.warning(
                "job %s: could not record a %s from its child process (%s: %s)",
                ctx.job_id,
                kind,
                type(exc).__name__,
                exc,
            )

    async def _report_of(self, pump: asyncio.Future[Message | None]) -> Message | None:
        try:
            return pump.result()
        except ProtocolError as exc:
            await self._terminate()
            raise ForkedProcessError(f"the child process broke the protocol: {exc}") from exc

    async def _outcome(self, report: Message) -> JsonValue:
        if report["t"] == "result":
            if not report.get("stored", True):
                self._logger.warning(
                    "job %s (%s) returned a %s, which is not JSON-serializable; result not stored",
                    self._ctx.job_id,
                    self._ctx.job_type,
                    report.get("type"),
                )
            value: JsonValue = report.get("value")
            return value
        type_name = str(report.get("type", "Exception"))
        message = str(report.get("message", ""))
        trace = str(report.get("traceback", ""))
        phase = report.get("phase")
        if phase == "payload":
            raise NonRetryableError(
                f"the stored payload no longer matches the schema of {self._ctx.job_type!r} "
                f"in the child process: {message}"
            )
        control = _control_of(report) if phase not in ("load", "payload") else None
        # The traceback is the one thing the job's record would otherwise lose with the child
        # (a Snooze is no failure: nothing to keep).
        if control is None or control[0] != "snooze":
            await self._persist_traceback(trace, report.get("pid"))
        if phase == "load":
            raise ForkedProcessError(
                f"the child process could not load the handler: {type_name}: {message}",
                kind=FailureKind.ERROR,
                remote_traceback=trace,
            )
        raise handler_error(
            type_name,
            str(report.get("module", "builtins")),
            message,
            trace,
            non_retryable=bool(report.get("non_retryable")),
            control=None if control is None else control[0],
            delay=None if control is None else control[1],
        )

    async def _persist_traceback(self, trace: str, pid: object) -> None:
        if not trace:
            return
        try:
            await self._ctx.log(
                "error", f"raised in child process {pid}:\n{trace.rstrip()}", {"pid": pid}
            )
        except Exception as exc:  # noqa: BLE001 - the failure itself is recorded regardless
            self._logger.warning(
                "job %s: could not record the child's traceback (%s: %s)",
                self._ctx.job_id,
                type(exc).__name__,
                exc,
            )

    # ---- flags -------------------------------------------------------------------------------

    async def _watch_flags(self) -> None:
        """Return when the child must stop (cancelled, lease lost); pass a shutdown on."""
        state = self._state
        shutdown_sent = state.shutting_down  # the start message carried it
        while not (state.cancelled or state.lease_lost):
            if state.shutting_down and not shutdown_sent:
                self._send({"t": "shutdown"})
                shutdown_sent = True
            await asyncio.sleep(FLAG_POLL_INTERVAL)

    # ---- the process -------------------------------------------------------------------------

    def _exit_description(self) -> str:
        exited = self._child.exit_code
        if not exited.done():
            return "the child process closed its connection and did not exit, even after SIGKILL"
        return describe_exit(exited.result())

    async def _exit_or_terminate(self) -> None:
        """After the child's report (or its end of stream) it should exit on its own."""
        await asyncio.wait({self._child.exit_code}, timeout=self._grace)
        await self._terminate()

    async def _terminate(self) -> None:
        exited = self._child.exit_code
        if exited.done():
            return
        if not self._state.terminate:
            self._child.signal(signal.SIGTERM)
            await self._grace_period(exited)
            if exited.done():
                return
        self._child.signal(signal.SIGKILL)
        await asyncio.wait({exited}, timeout=_KILL_WAIT)
        if not exited.done():
            self._logger.error(
                "job %s: child process %d did not exit after SIGKILL",
                self._ctx.job_id,
                self._child.pid,
            )

    async def _grace_period(self, exited: asyncio.Future[int | None]) -> None:
        """Wait up to the grace period for the child to exit after SIGTERM; a terminate request
        meanwhile (`cancel_job(terminate=True)`) ends the wait: the caller kills."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._grace
        while not exited.done() and not self._state.terminate:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await asyncio.wait({exited}, timeout=min(remaining, FLAG_POLL_INTERVAL))

    async def _clean_up(self, *tasks: asyncio.Future[Any]) -> None:
        try:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
            for task in tasks:  # consume results so none is reported as never retrieved
                if not task.cancelled():
                    task.exception()
            await self._terminate()
        except asyncio.CancelledError:
            # Cancelled again while cleaning up (a forced shutdown): no grace period.
            self._child.signal(signal.SIGKILL)
            raise
        finally:
            self._writer.close()


def _control_of(report: Message) -> tuple[Control, timedelta | None] | None:
    """The `Retry`/`Snooze` a child reported (`_child._control`), with its delay; None for
    any other exception. A malformed field counts as an ordinary error, never a crash here."""
    control = report.get("control")
    delay_us = report.get("delay_us")
    if control not in ("retry", "snooze"):
        return None
    if delay_us is None:
        return ("retry", None) if control == "retry" else None
    if isinstance(delay_us, bool) or not isinstance(delay_us, int) or delay_us < 0:
        return None
    try:
        delay = timedelta(microseconds=delay_us)
    except OverflowError:
        return None
    return ("retry" if control == "retry" else "snooze", delay)
