"""The error hierarchy. Every error the library raises on purpose derives from `TimeCrisisError`.

Errors about bad input (a payload, an option, a duration, a schedule) are also `ValueError`s, so
callers that already catch `ValueError` at a boundary keep working. Each error takes the offending
value and builds its own message, so the message always names what was wrong.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


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
