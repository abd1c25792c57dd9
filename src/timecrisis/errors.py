"""The error hierarchy. Every error the library raises on purpose derives from `TimeCrisisError`.

Errors about bad input (a payload, an option, a duration, a schedule) are also `ValueError`s, so
callers that already catch `ValueError` at a boundary keep working. Each error takes the offending
value and builds its own message, so the message always names what was wrong.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from timecrisis.durations import Duration


class TimeCrisisError(Exception):
    """Base class of every timecrisis error."""

    def __init__(self, message: str | None = None) -> None:
        # The docstring is the fallback message, so a bare `raise SomeError()` still says something.
        super().__init__(message or (self.__doc__ or type(self).__name__).strip())


class JobDefinitionNotFoundError(TimeCrisisError, LookupError):
    """No job definition is registered for this type."""

    def __init__(self, job_type: str, registered: Iterable[str] = ()) -> None:
        self.job_type = job_type
        message = f"no job definition is registered for type {job_type!r}"
        close = difflib.get_close_matches(str(job_type), list(registered), n=1, cutoff=0.6)
        if close:
            message += f"; did you mean {close[0]!r}?"
        super().__init__(message)


class JobAlreadyRegisteredError(TimeCrisisError, ValueError):
    """A job definition with this type is already registered."""

    def __init__(self, job_type: str) -> None:
        self.job_type = job_type
        super().__init__(f"a job definition for type {job_type!r} is already registered")


class DistributedLockError(TimeCrisisError):
    """A distributed lock could not be acquired, renewed or released."""


class JobValidationError(TimeCrisisError, ValueError):
    """A payload or an enqueue option is invalid. Nothing was stored."""

    def __init__(self, message: str, *, errors: list[Any] | None = None) -> None:
        self.errors = errors or []
        super().__init__(message)


class InvalidScheduleError(TimeCrisisError, ValueError):
    """A schedule (cron expression, interval, exact time or time zone) is invalid."""


class InvalidDurationError(TimeCrisisError, ValueError):
    """A duration could not be understood."""

    def __init__(self, value: object, reason: str | None = None) -> None:
        self.value = value
        detail = f": {reason}" if reason else ""
        super().__init__(
            f"invalid duration {value!r}{detail} (use seconds as a number, a timedelta, "
            "or a string such as '500ms', '10s', '5m', '2h', '1d')"
        )


class StorageError(TimeCrisisError):
    """The storage backend failed (connection lost, database locked for too long, bad URL...).

    The driver's own exception is kept as `__cause__`.
    """


class NonRetryableError(TimeCrisisError):
    """Raised by a handler to fail its job at once, without retrying."""


class Retry(TimeCrisisError):
    """Raised by a handler to fail this attempt and retry the job after `delay` (any duration
    form), or after its backoff when `delay` is None. The attempt counts: once `max_retries`
    is used up the job is dead-lettered, as after any failure. A bad `delay` raises
    `InvalidDurationError` here, in the handler (and that fails the attempt as an error).

    `delay` is measured on the store's clock from the moment the failure is written, and is
    not capped by `max_retry_delay` (the handler asked for it)."""

    delay: timedelta | None
    reason: str | None = None

    def __init__(self, delay: Duration | None = None, *, reason: str | None = None) -> None:
        self.delay = None if delay is None else _control_delay(delay)
        self.reason = reason
        when = "the backoff" if self.delay is None else _format(self.delay)
        super().__init__(f"{reason or 'retry requested by the handler'} (retry after {when})")


class Snooze(TimeCrisisError):
    """Raised by a handler to give its job back: it returns to `pending` and runs again after
    `delay` (any duration form; 0 gives it back at once), and this attempt is not charged (its
    run ends `released`, `on_job_failed` is not called). A job that `cancel_job` asked to stop
    ends `canceled` instead (cancel is final). A bad `delay` raises `InvalidDurationError`
    here, in the handler (and that fails the attempt as an error)."""

    delay: timedelta
    reason: str | None = None

    def __init__(self, delay: Duration, *, reason: str | None = None) -> None:
        self.delay = _control_delay(delay)
        self.reason = reason
        super().__init__(f"{reason or 'snoozed by the handler'} (for {_format(self.delay)})")


def _control_delay(value: Duration) -> timedelta:
    # Imported here: `durations` imports this module for InvalidDurationError.
    from timecrisis.durations import parse_job_duration

    return parse_job_duration(value)


def _format(value: timedelta) -> str:
    from timecrisis.durations import format_duration

    return format_duration(value)


class JobTimeoutError(TimeCrisisError):
    """A handler ran longer than its definition's `timeout`; the attempt failed."""


class JobExpiredError(TimeCrisisError):
    """A job passed its `expires_at` before it could start; it was dead-lettered."""


class LeaseExpiredError(TimeCrisisError):
    """A job's lease expired while it ran (its worker died or lost contact); the attempt failed."""


class JobNotFoundError(TimeCrisisError, LookupError):
    """No job has this id."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"no job with id {job_id!r}")
