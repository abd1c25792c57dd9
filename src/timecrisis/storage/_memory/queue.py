"""The pending-job index of the in-memory store: what a claim or an expiry sweep touches,
without scanning every job.

Per (job type, queue), two heaps (so a claim of named queues never looks at another queue's
jobs, and a paused queue is skipped whole: docs/flow-control.md):
- `ready`: jobs whose `run_at` has come, by (priority descending, enqueue sequence ascending),
  the claim order;
- `waiting`: jobs whose `run_at` is still ahead, by `run_at`; a claim first moves the due ones
  to `ready`.
And one `expiry` heap over all pending jobs that have an `expires_at`, for `expire_jobs`.

Entries are never removed in place. Each carries the job's `version` at push time; an entry
whose job is gone, no longer pending, or has moved on to another version is stale and is
dropped when it reaches the top of its heap (lazy deletion, as `heapq`'s docs suggest).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Mapping
from datetime import datetime

from timecrisis.models import JobStatus
from timecrisis.storage._memory.rows import JobRow

# (-priority, seq, version, job_id): seq is unique, so comparison never goes past it.
_ReadyEntry = tuple[int, int, int, str]
# (time, seq, version, job_id)
_TimedEntry = tuple[datetime, int, int, str]
# (job type, queue): one pair of heaps each.
_Key = tuple[str, str]


class PendingQueue:
    def __init__(self, lookup: Callable[[str], JobRow | None]) -> None:
        self._lookup = lookup
        self._ready: dict[_Key, list[_ReadyEntry]] = {}
        self._waiting: dict[_Key, list[_TimedEntry]] = {}
        self._expiry: list[_TimedEntry] = []
        self._queues_of: dict[str, set[str]] = {}  # every queue a type has had a job in

    def push(self, row: JobRow, now: datetime) -> None:
        """Index a job that has just become pending (call after its version was bumped)."""
        key = (row.type, row.queue)
        self._queues_of.setdefault(row.type, set()).add(row.queue)
        if row.run_at <= now:
            heapq.heappush(self._ready.setdefault(key, []), _ready_entry(row))
        else:
            heapq.heappush(self._waiting.setdefault(key, []), _waiting_entry(row))
        if row.expires_at is not None:
            heapq.heappush(self._expiry, (row.expires_at, row.seq, row.version, row.id))

    def take(
        self,
        now: datetime,
        capacities: Mapping[str, int | None],
        limit: int,
        queues: Collection[str] | None = None,
        paused: Collection[str] = (),
        admit: Callable[[JobRow], bool] | None = None,
    ) -> list[JobRow]:
        """Remove and return up to `limit` claimable jobs in claim order, taking at most
        `capacities[type]` jobs of each type (`None` = no cap), only from `queues` (`None` =
        every queue), and none whose type or queue is in `paused`. Types and queues left out
        are never looked at, so they cannot block the others. A job `admit` refuses (its
        concurrency key is full) is passed over and stays queued; `admit` is asked once per
        job, in claim order, and a True counts the job as taken."""
        remaining = {
            t: c for t, c in capacities.items() if (c is None or c > 0) and t not in paused
        }
        # A k-way merge of the (type, queue) ready heaps: `fronts` holds each open heap's best.
        fronts: list[tuple[int, int, _Key]] = []
        for job_type in remaining:
            for queue in self._queues_of.get(job_type, ()):
                if (queues is None or queue in queues) and queue not in paused:
                    self._promote_due((job_type, queue), now)
                    self._push_front(fronts, (job_type, queue), now)
        taken: list[JobRow] = []
        passed_over: list[tuple[_Key, _ReadyEntry]] = []
        while fronts and len(taken) < limit:
            _, _, key = heapq.heappop(fronts)
            job_type = key[0]
            if remaining[job_type] == 0:
                continue  # the type filled up from another of its queues: this heap closes
            entry = heapq.heappop(self._ready[key])
            row = self._lookup(entry[3])
            assert row is not None  # `_front` just checked it
            if admit is not None and not admit(row):
                passed_over.append((key, entry))
                self._push_front(fronts, key, now)
                continue
            taken.append(row)
            capacity = remaining[job_type]
            if capacity is not None:
                remaining[job_type] = capacity = capacity - 1
            if capacity is None or capacity > 0:
                self._push_front(fronts, key, now)
        for key, entry in passed_over:
            heapq.heappush(self._ready[key], entry)
        return taken

    def pop_expired(self, now: datetime, limit: int) -> list[JobRow]:
        """Remove and return up to `limit` pending jobs with `expires_at <= now`, oldest first."""
        expired: list[JobRow] = []
        while self._expiry and self._expiry[0][0] <= now and len(expired) < limit:
            _, _, version, job_id = heapq.heappop(self._expiry)
            row = self._current(job_id, version)
            if row is not None:
                expired.append(row)
        return expired

    def _current(self, job_id: str, version: int) -> JobRow | None:
        row = self._lookup(job_id)
        if row is None or row.status is not JobStatus.PENDING or row.version != version:
            return None
        return row

    def _promote_due(self, key: _Key, now: datetime) -> None:
        waiting = self._waiting.get(key)
        while waiting and waiting[0][0] <= now:
            _, _, version, job_id = heapq.heappop(waiting)
            row = self._current(job_id, version)
            if row is not None:
                heapq.heappush(self._ready.setdefault(key, []), _ready_entry(row))

    def _push_front(self, fronts: list[tuple[int, int, _Key]], key: _Key, now: datetime) -> None:
        entry = self._front(key, now)
        if entry is not None:
            heapq.heappush(fronts, (entry[0], entry[1], key))

    def _front(self, key: _Key, now: datetime) -> _ReadyEntry | None:
        """The best claimable entry of a heap, dropping what cannot be claimed on the way."""
        ready = self._ready.get(key)
        while ready:
            entry = ready[0]
            row = self._current(entry[3], entry[2])
            if row is None:
                heapq.heappop(ready)
            elif row.run_at > now:  # only if the clock was set back: wait again
                heapq.heappop(ready)
                heapq.heappush(self._waiting.setdefault(key, []), _waiting_entry(row))
            elif row.expires_at is not None and row.expires_at <= now:
                # Never claimable again; its `expiry` entry lets `expire_jobs` fail it.
                heapq.heappop(ready)
            else:
                return entry
        return None


def _ready_entry(row: JobRow) -> _ReadyEntry:
    return (-row.priority, row.seq, row.version, row.id)


def _waiting_entry(row: JobRow) -> _TimedEntry:
    return (row.run_at, row.seq, row.version, row.id)
