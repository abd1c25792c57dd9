"""The rate-limit windows of the in-memory store: the recent claims of each rate-limited type.

The same numbering as the SQL stores (docs/flow-control.md): each claim of a type appends
`(first_start, starts, started_at)`, where `first_start` numbers the type's starts. The starts
inside the window are those from the oldest entry still inside it to the newest, so the count
is one subtraction, whatever the rate; entries that left the window are dropped as it moves.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from timecrisis.rate_limits import RateLimit


@dataclass(frozen=True, slots=True)
class _Starts:
    first_start: int
    starts: int
    started_at: datetime


class RateWindows:
    def __init__(self) -> None:
        self._starts: dict[str, deque[_Starts]] = {}

    def room(self, job_type: str, rate: RateLimit, now: datetime) -> int:
        """How many more claims of `job_type` its window allows at `now` (never negative)."""
        entries = self._inside(job_type, rate, now)
        if not entries:
            return rate.limit
        newest = entries[-1]
        in_window = newest.first_start + newest.starts - entries[0].first_start
        return max(0, rate.limit - in_window)

    def record(self, job_type: str, starts: int, now: datetime) -> None:
        entries = self._starts.setdefault(job_type, deque())
        first = entries[-1].first_start + entries[-1].starts if entries else 0
        entries.append(_Starts(first, starts, now))

    def free_at(self, rate_limits: Mapping[str, RateLimit], now: datetime) -> datetime | None:
        """The earliest time one of these types, full at `now`, has room again."""
        times = []
        for job_type, rate in rate_limits.items():
            entries = self._inside(job_type, rate, now)
            if not entries or self.room(job_type, rate, now) > 0:
                continue
            # Full: it frees when the start `limit` places before the next one leaves.
            newest = entries[-1]
            oldest_kept = newest.first_start + newest.starts - rate.limit
            holder = next(e for e in reversed(entries) if e.first_start <= oldest_kept)
            times.append(holder.started_at + rate.window)
        return min(times, default=None)

    def _inside(self, job_type: str, rate: RateLimit, now: datetime) -> deque[_Starts]:
        """The type's entries still inside its window at `now` (the others are dropped)."""
        entries = self._starts.get(job_type)
        if entries is None:
            return deque()
        while entries and entries[0].started_at <= now - rate.window:
            entries.popleft()
        return entries
