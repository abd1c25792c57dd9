"""Locks and worker rows of the in-memory store: the leader lease and the cluster roster.

A lock is expired at `expires_at` itself (the same boundary as job leases): from that instant
anyone may take it, and its holder can no longer renew it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta

from timecrisis.models import WorkerInfo
from timecrisis.storage._common import new_id
from timecrisis.storage._memory.rows import JobRow, LockRow, WorkerRow
from timecrisis.storage.base import LockInfo


class LockTable:
    def __init__(self) -> None:
        self._locks: dict[str, LockRow] = {}

    def acquire(self, name: str, owner: str, ttl: timedelta, now: datetime) -> str | None:
        current = self._locks.get(name)
        if current is not None and current.expires_at > now:
            return None  # held, even by `owner` itself: locks are not re-entrant
        token = new_id()
        self._locks[name] = LockRow(owner, token, acquired_at=now, expires_at=now + ttl)
        return token

    def renew(self, name: str, token: str, ttl: timedelta, now: datetime) -> bool:
        current = self._locks.get(name)
        if current is None or current.token != token or current.expires_at <= now:
            return False
        current.expires_at = now + ttl
        return True

    def release(self, name: str, token: str) -> bool:
        current = self._locks.get(name)
        if current is None or current.token != token:
            return False
        del self._locks[name]
        return True

    def get(self, name: str, now: datetime) -> LockInfo | None:
        current = self._locks.get(name)
        if current is None or current.expires_at <= now:
            return None
        return LockInfo(name, current.owner, current.expires_at, current.acquired_at)


class WorkerTable:
    def __init__(self) -> None:
        self._workers: dict[str, WorkerRow] = {}

    def heartbeat(
        self, name: str, running: int, is_leader: bool, ttl: timedelta, now: datetime
    ) -> None:
        row = self._workers.get(name)
        if row is None:
            self._workers[name] = WorkerRow(name, now, now, is_leader, running, now + ttl)
            return
        row.last_heartbeat = now
        row.running = running
        row.is_leader = is_leader
        row.expires_at = now + ttl

    def remove(self, name: str) -> None:
        self._workers.pop(name, None)

    def sorted_by_name(self, running_jobs: Iterable[JobRow]) -> list[WorkerInfo]:
        """The roster by name. Each worker's `running` is counted from `running_jobs` now (as
        the SQL stores count the jobs table), not the count sent with its last heartbeat."""
        running = Counter(row.worker for row in running_jobs)
        return [
            self._workers[name].to_record().model_copy(update={"running": running[name]})
            for name in sorted(self._workers)
        ]

    def prune(self, now: datetime) -> list[str]:
        # Each worker's own deadline decides, never the caller's settings (DESIGN §4).
        stale = sorted(name for name, row in self._workers.items() if row.expires_at < now)
        for name in stale:
            del self._workers[name]
        return stale
