"""The times at which work this node knows of becomes due, so the worker sleeps until the
earliest of them instead of a whole `job_processing_interval` (DESIGN §4: the interval bounds
the discovery of work nobody told this node about; it never delays work whose time is known).

Two kinds of times come in:
- store times (`Job.run_at` of a retry this node wrote, a `run_at` passed to `enqueue`): on the
  store's clock, which on PostgreSQL is the database's, not this host's. They are turned into a
  sleep against one `storage.now()` reading (an *anchor*), never against the local wall clock.
- local deadlines (`time.monotonic()` + `delay` of an enqueue made here): the store resolves
  `delay` against its own now during the insert, which is before the insert returned, so a
  deadline counted from the return is never early.

A time is forgotten once a claim was issued at or after it: whatever was due then, that claim
saw. So each known time costs at most one claim of its own, and nothing here can spin.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

# A node that hears of many due times (a burst of retries) keeps the earliest this many; the
# later ones are still found, by the processing interval.
MAX_KNOWN = 1024

_T = TypeVar("_T", datetime, float)


@dataclass(frozen=True, slots=True)
class Anchor:
    """`store_now` was read from the store; the answer arrived at `monotonic` (local). At any
    later local instant `m`, the store's clock reads at least `store_now + (m - monotonic)`."""

    store_now: datetime
    monotonic: float

    def store_time_at(self, monotonic: float) -> datetime:
        return self.store_now + timedelta(seconds=monotonic - self.monotonic)


class DueTimes:
    def __init__(self, limit: int = MAX_KNOWN) -> None:
        self._limit = limit
        self._store: list[datetime] = []  # heaps: earliest first
        self._local: list[float] = []

    def __bool__(self) -> bool:
        return bool(self._store or self._local)

    @property
    def has_store_times(self) -> bool:
        return bool(self._store)

    def add_store_time(self, at: datetime) -> None:
        _push(self._store, at, self._limit)

    def add_local_deadline(self, monotonic: float) -> None:
        _push(self._local, monotonic, self._limit)

    def claimed_at(self, monotonic: float, anchor: Anchor | None) -> None:
        """A claim was issued at local instant `monotonic`: forget what was due by then. A
        store time is forgotten only with an anchor read before the claim (else the store's
        clock at that instant is unknown, and the next sleep computation anchors it)."""
        while self._local and self._local[0] <= monotonic:
            heapq.heappop(self._local)
        if anchor is None or anchor.monotonic > monotonic:
            return
        reached = anchor.store_time_at(monotonic)
        while self._store and self._store[0] <= reached:
            heapq.heappop(self._store)

    def seconds_until_next(self, monotonic: float, anchor: Anchor | None) -> float | None:
        """Seconds from local instant `monotonic` until the earliest known time (0 if it has
        passed), or None when nothing is known. Store times need an anchor."""
        waits: list[float] = []
        if self._local:
            waits.append(self._local[0] - monotonic)
        if self._store and anchor is not None:
            reached = anchor.store_time_at(monotonic)
            waits.append((self._store[0] - reached).total_seconds())
        if not waits:
            return None
        return max(0.0, min(waits))


def _push(heap: list[_T], value: _T, limit: int) -> None:
    heapq.heappush(heap, value)
    if len(heap) > limit:
        # Drop the latest: the interval still finds that job, and the soonest stay exact.
        heap.remove(max(heap))
        heapq.heapify(heap)
