"""What a failed attempt records: its `FailureKind` and the handler's traceback.

The worker turns the exception an attempt ended with into the run's `failure_kind` and
`traceback` here, in one place, so every runner (in-process, thread, fork) is read the same way
and nothing downstream (metrics, hooks, the dashboard) has to parse the error text.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import traceback
from types import TracebackType

from timecrisis.errors import JobTimeoutError, NonRetryableError
from timecrisis.execution.fork_errors import ForkedHandlerError, ForkedProcessError
from timecrisis.models import FailureKind

# Frames of these directories sit between the worker and the handler: the claim loop, the
# runners, the event loop and the thread pool. A reader wants the handler's frames first.
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PLUMBING = (
    os.path.join(_PACKAGE, "loops") + os.sep,
    os.path.join(_PACKAGE, "execution") + os.sep,
    os.path.dirname(os.path.abspath(asyncio.__file__)) + os.sep,
    os.path.dirname(os.path.abspath(concurrent.futures.__file__)) + os.sep,
)


def failure_kind(exc: BaseException) -> FailureKind:
    """The kind of failure `exc` stands for, as the worker records it."""
    if isinstance(exc, JobTimeoutError):
        return FailureKind.TIMEOUT
    if isinstance(exc, ForkedProcessError):
        return exc.kind
    if isinstance(exc, NonRetryableError):  # a fork-mode NonRetryableError is one too
        return FailureKind.NON_RETRYABLE
    return FailureKind.ERROR


def failure_traceback(exc: BaseException) -> str | None:
    """The formatted traceback of the handler's exception, starting at the handler's frames;
    the child's own for fork mode. None for a timeout or a crash: the handler raised nothing
    (a timeout's traceback would only show the runner that gave up waiting)."""
    if isinstance(exc, ForkedHandlerError):
        return exc.remote_traceback or None
    if isinstance(exc, ForkedProcessError):
        return exc.remote_traceback or None
    if isinstance(exc, JobTimeoutError):
        return None
    tb = _skip_plumbing(exc.__traceback__)
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _skip_plumbing(tb: TracebackType | None) -> TracebackType | None:
    first = tb
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PLUMBING):
        tb = tb.tb_next
    # Raised by the plumbing itself (a payload that no longer validates): keep every frame.
    return tb if tb is not None else first
