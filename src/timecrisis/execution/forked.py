"""Fork mode: each attempt of a job type runs its handler in a fresh child process.

`JobDefinition(fork_mode=True)` trades a few milliseconds per job for isolation: a handler that
segfaults, leaks, is OOM-killed, blocks in native code or ignores cancellation cannot take the
worker down or starve its event loop, and a timeout, `cancel_job` or `stop()` can kill it for
certain. See docs/fork-mode.md for the user's view.

How it fits together (each piece in its own module):

- `_targets`: at registration (`execution/registry.py`), `ForkExecutor.add` checks that a
  child can import what the definition runs (a module-level handler and schema, or a
  `fork_helper_path` file with a `handle`) and refuses anything else with a `JobValidationError`.
- `fork_server` / `_fork_server_main`: children are forked by a small server process, a fresh
  interpreter that preloaded timecrisis and pydantic and never ran an event loop, a thread or a
  connection (spawn semantics at fork prices; the measurements are in `fork_server`).
- `_protocol`: worker and child talk over a socket pair in length-prefixed JSON frames; no job
  data, result or exception is ever pickled.
- `_preload`: once a child has shown that importing a job type's handler starts no thread and
  opens no file, the server imports it too, so later children inherit it instead of importing it.
- `_child`: the child takes the worker's `sys.path` and working directory, imports the handler
  and schema by name, validates the payload, runs the handler (sync directly, async under
  `asyncio.run`) with a context whose calls are messages, and reports the outcome.
- `_supervisor`: the worker forwards the child's logs, progress and touches to the store,
  passes `shutting_down` on, and terminates the child (SIGTERM, grace, SIGKILL) on timeout,
  cancellation, a lost lease or a forced stop, or kills it at once (SIGKILL) on
  `cancel_job(terminate=True)`; it always collects the exit status.
- `fork_errors`: how a crash or a handler's exception reads in `fail_reason`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from typing import Any, ClassVar

from timecrisis._logging import child as child_logger
from timecrisis.context import JobContext, JobState
from timecrisis.definitions import JobDefinition
from timecrisis.errors import JobValidationError
from timecrisis.execution._preload import preload_request
from timecrisis.execution._supervisor import ChildSupervisor
from timecrisis.execution._targets import ForkTarget, fork_target, main_module_hint
from timecrisis.execution.fork_errors import ForkedHandlerError, ForkedProcessError
from timecrisis.execution.fork_server import ForkServer, ForkServerError, default_fork_server
from timecrisis.models import Job, JsonValue

__all__ = [
    "TERMINATE_GRACE",
    "ForkExecutor",
    "ForkedHandlerError",
    "ForkedProcessError",
    "check_fork_mode_supported",
    "fork_mode_supported",
]

TERMINATE_GRACE = 2.0
"""Seconds between SIGTERM and SIGKILL when a child must stop. Short, because `stop()` allows
5 s for cancelled attempts to wind down, and a child that handles SIGTERM only needs to save
its place."""

# The read buffer's high-water mark: a large payload or result arrives in fewer wake-ups.
_STREAM_LIMIT = 1 << 20


def fork_mode_supported() -> bool:
    return hasattr(os, "fork") and hasattr(socket, "send_fds") and hasattr(socket, "AF_UNIX")


class ForkExecutor:
    """The `Executor` of fork-mode job types: each attempt in a fresh child process. Not
    interruptible by task cancellation: the supervisor kills the child on `state.terminate`,
    so its exit status is always collected."""

    interruptible: ClassVar[bool] = False

    def __init__(
        self,
        logger: logging.Logger,
        *,
        fork_server: ForkServer | None = None,
        terminate_grace: float = TERMINATE_GRACE,
    ) -> None:
        self._logger = logger
        self._server = fork_server
        self._grace = terminate_grace
        self._targets: dict[str, ForkTarget] = {}

    def add(self, definition: JobDefinition[Any]) -> None:
        """Check `definition` (JobValidationError if a child could not load it) and keep its
        target."""
        self._targets[definition.type] = fork_target(definition)

    def _target(self, definition: JobDefinition[Any]) -> ForkTarget:
        target = self._targets.get(definition.type)
        if target is None:
            self.add(definition)
            target = self._targets[definition.type]
        return target

    async def run(
        self, definition: JobDefinition[Any], job: Job, ctx: JobContext, state: JobState
    ) -> JsonValue:
        target = self._target(definition)
        start = _start_message(target, job, state)
        server = self._server or default_fork_server()
        worker_end, child_end = socket.socketpair()
        handed_over = False
        try:
            try:
                child = await server.fork(child_end)
            except (ForkServerError, OSError) as exc:
                raise ForkedProcessError(f"could not start a child process: {exc}") from exc
            finally:
                child_end.close()  # the child has its own copy now
            try:
                reader, writer = await asyncio.open_unix_connection(
                    sock=worker_end, limit=_STREAM_LIMIT
                )
            except BaseException:
                child.signal(signal.SIGKILL)
                raise
            handed_over = True
        finally:
            if not handed_over:
                worker_end.close()
        supervisor = ChildSupervisor(
            child,
            reader,
            writer,
            ctx,
            state,
            child_logger(self._logger, "fork"),
            grace=self._grace,
            on_loaded_cleanly=lambda: server.preload(preload_request(start)),
        )
        return await supervisor.run(start, definition.timeout_td)


def _start_message(target: ForkTarget, job: Job, state: JobState) -> dict[str, Any]:
    return {
        "t": "start",
        # Read at every attempt, so a path added after the worker started is seen too.
        "sys_path": list(sys.path),
        "cwd": os.getcwd(),
        "main": main_module_hint(),
        "handler": target.handler.as_json() if target.handler else None,
        "helper_path": target.helper_path,
        "schema": target.schema.as_json(),
        "job": {
            "id": job.id,
            "type": job.type,
            "attempt": job.attempts,
            "entity_id": job.entity_id,
            "payload": job.data,
        },
        "shutting_down": state.shutting_down,
        "cancelled": state.cancelled or state.lease_lost,
    }


def check_fork_mode_supported(definition: JobDefinition[Any]) -> None:
    """`JobValidationError` when this platform cannot fork handlers."""
    if not fork_mode_supported():
        raise JobValidationError(
            f"job type {definition.type!r} asks for fork_mode, which needs os.fork and Unix "
            "sockets (Linux, macOS, BSD)"
        )
