"""How the worker reads a failed attempt's exception: its kind and its traceback."""

from __future__ import annotations

import pytest

from timecrisis import FailureKind, JobTimeoutError, NonRetryableError
from timecrisis.execution.failures import failure_kind, failure_traceback
from timecrisis.execution.fork_errors import ForkedProcessError, handler_error


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (KeyError("missing"), FailureKind.ERROR),
        (TimeoutError("the handler's own"), FailureKind.ERROR),  # not the job's timeout
        (JobTimeoutError("too slow"), FailureKind.TIMEOUT),
        (NonRetryableError("no"), FailureKind.NON_RETRYABLE),
        (ForkedProcessError("killed by signal SIGSEGV (11)"), FailureKind.CRASHED),
        (ForkedProcessError("could not load", kind=FailureKind.ERROR), FailureKind.ERROR),
        (
            handler_error("ValueError", "builtins", "x", "tb", non_retryable=False),
            FailureKind.ERROR,
        ),
        (
            handler_error("NonRetryableError", "timecrisis.errors", "x", "tb", non_retryable=True),
            FailureKind.NON_RETRYABLE,
        ),
    ],
)
def test_each_exception_has_its_kind(exc: BaseException, kind: FailureKind) -> None:
    assert failure_kind(exc) is kind


def _raise_from_here() -> None:
    raise KeyError("missing")


def test_the_traceback_of_an_exception_names_its_frames() -> None:
    try:
        _raise_from_here()
    except KeyError as exc:
        text = failure_traceback(exc)
    assert text is not None
    assert "in _raise_from_here" in text
    assert text.rstrip().endswith("KeyError: 'missing'")


def test_fork_mode_gives_the_childs_traceback_and_a_crash_or_timeout_none() -> None:
    remote = handler_error("ValueError", "builtins", "x", "Traceback ...child", non_retryable=False)
    assert failure_traceback(remote) == "Traceback ...child"
    assert failure_traceback(ForkedProcessError("exited with status 3")) is None
    assert failure_traceback(JobTimeoutError("too slow")) is None
