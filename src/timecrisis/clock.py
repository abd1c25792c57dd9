"""The one time seam.

Every storage compares times with ONE clock (DESIGN §2: "times are compared with one clock per
store"). In-memory and SQLite stores use a `Clock` object, the system clock by default; the
PostgreSQL store uses the database's `now()` unless a clock is passed explicitly (tests do that to
move time without sleeping). Nothing else in the library reads the wall clock to decide whether a
lease, lock or due time has passed: it asks its storage (`await storage.now()`).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Something that tells the current time as an aware UTC datetime."""

    def now(self) -> datetime: ...


class SystemClock:
    """The machine's wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to. For tests: expire a lease without sleeping.

    Thread-safe, because the SQLite store reads it from its connection thread.
    """

    def __init__(self, start: datetime | None = None) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = (start or datetime.now(UTC)).astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        """Move the clock forward by `delta` (a timedelta or seconds) and return the new time."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        with self._lock:
            self._now += step
            return self._now

    def set(self, value: datetime) -> None:
        if value.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        with self._lock:
            self._now = value.astimezone(UTC)
