"""How a fork-mode attempt that went wrong reads in the worker.

The worker records a failed attempt as `f"{type(exc).__name__}: {exc}"`, so these classes are
shaped for that line:

- the child died (a non-zero exit, a signal, an out-of-memory kill) or never started:
  `ForkedProcessError: the child process was killed by signal SIGSEGV (11)`;
- the handler raised: the exception is re-created under its own name, as a subclass of
  `ForkedHandlerError` (and of `NonRetryableError` when the original was one, so it is not
  retried; of `Retry` or `Snooze`, with the same `delay`, when the handler raised one, so the
  worker obeys it): `ValueError: bad row 7`, exactly as the in-process run would read. Only
  names and text cross the boundary (never a pickled exception), so the re-created class is not the
  original: catch `ForkedHandlerError` and read `remote_type` to tell them apart.
"""

from __future__ import annotations

import signal
import threading
from datetime import timedelta
from typing import Literal, cast

from timecrisis.errors import NonRetryableError, Retry, Snooze, TimeCrisisError
from timecrisis.models import FailureKind


class ForkedProcessError(TimeCrisisError):
    """A fork-mode child process could not start, or died before reporting how its handler
    ended.

    `kind` is the run's `failure_kind`: `crashed`, except for a child that started but could
    not load the handler (`error`: the code is at fault, not the process), whose traceback is
    then `remote_traceback`."""

    kind: FailureKind
    remote_traceback: str

    def __init__(
        self,
        message: str | None = None,
        *,
        kind: FailureKind = FailureKind.CRASHED,
        remote_traceback: str = "",
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.remote_traceback = remote_traceback


class ForkedHandlerError(TimeCrisisError):
    """An exception raised by a handler in a fork-mode child, re-created in the worker.

    Its class bears the original's name; `remote_type` is the original's `module.QualName` and
    `remote_traceback` the traceback printed in the child."""

    remote_type: str
    remote_traceback: str

    def __init__(self, message: str, *, remote_type: str, remote_traceback: str = "") -> None:
        # Not TimeCrisisError.__init__: an empty message must stay empty, as in the child, not
        # fall back to this docstring.
        Exception.__init__(self, message)
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback


Control = Literal["retry", "snooze"]
"""A handler's `Retry` or `Snooze`, as the child reports it."""

_CONTROL_BASES: dict[Control, type[TimeCrisisError]] = {"retry": Retry, "snooze": Snooze}

_classes: dict[tuple[str, str, bool, Control | None], type[ForkedHandlerError]] = {}
_classes_lock = threading.Lock()


def handler_error(
    type_name: str,
    module: str,
    message: str,
    traceback: str,
    *,
    non_retryable: bool,
    control: Control | None = None,
    delay: timedelta | None = None,
) -> ForkedHandlerError:
    """The worker-side stand-in for an exception a handler raised in its child. With
    `control`, it is also a `Retry`/`Snooze` whose `delay` is the child's."""
    key = (module, type_name, non_retryable, control)
    with _classes_lock:
        cls = _classes.get(key)
        if cls is None:
            bases: tuple[type, ...] = (ForkedHandlerError,)
            if non_retryable:
                bases += (NonRetryableError,)
            if control is not None:
                bases += (_CONTROL_BASES[control],)
            # __module__ as the original's, so a logged traceback reads `ValueError: ...` for
            # a builtin and `app.errors.Oops: ...` otherwise.
            namespace = {"__module__": module, "__qualname__": type_name}
            cls = cast("type[ForkedHandlerError]", type(type_name, bases, namespace))
            _classes[key] = cls
    qualified = type_name if module == "builtins" else f"{module}.{type_name}"
    error = cls(message, remote_type=qualified, remote_traceback=traceback)
    if control is not None:
        # Set here: ForkedHandlerError.__init__ does not run Retry's or Snooze's, which would
        # parse a delay again and rewrite the child's message.
        error.delay = delay  # type: ignore[attr-defined]
    return error


def describe_exit(code: int | None) -> str:
    """A child's exit status in words (a negative code is the signal that killed it)."""
    if code is None:
        return "the child process's exit status is unknown (its fork server died)"
    if code < 0:
        number = -code
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "signal"
        text = f"the child process was killed by signal {name} ({number})"
        if number == signal.SIGKILL:
            text += "; the kernel's out-of-memory killer sends SIGKILL"
        return text
    if code == 0:
        return "the child process exited (status 0) without reporting a result"
    return f"the child process exited with status {code}"
