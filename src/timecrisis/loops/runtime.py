"""What every loop shares: the store, this worker's identity, settings, hooks and registry
(job types and their executors)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from datetime import timedelta
from typing import Any

from timecrisis.definitions import JobDefinition
from timecrisis.execution.registry import Registry
from timecrisis.hooks import Hooks, call_hook
from timecrisis.models import Job
from timecrisis.storage.base import JobStorage


@dataclass(frozen=True, slots=True)
class Settings:
    """The scheduler's options, parsed (seconds as floats, durations as timedeltas)."""

    max_concurrent_jobs: int = 20
    # Claimed jobs held beyond the free slots at most (None: 4 x max_concurrent_jobs); see
    # loops/_prefetch.py for when a worker actually holds them.
    prefetch: int | None = None
    job_lock_ttl: timedelta = timedelta(seconds=60)
    leader_lock_ttl: timedelta = timedelta(seconds=30)
    job_processing_interval: float = 5.0
    job_scheduling_interval: float = 60.0
    expired_job_check_interval: float = 60.0
    worker_heartbeat_interval: float = 15.0
    worker_inactive_check_interval: float = 60.0
    shutdown_timeout: float = 15.0
    scheduled_job_max_stale_age: timedelta = timedelta(hours=1)
    job_retention: timedelta = timedelta(days=30)
    # The queues this worker claims from (None: every queue); docs/flow-control.md.
    queues: frozenset[str] | None = None

    @property
    def prefetch_ceiling(self) -> int:
        # 4 x concurrency, Celery's default multiplier; PrefetchBudget keeps long jobs out of it.
        return 4 * self.max_concurrent_jobs if self.prefetch is None else self.prefetch

    @property
    def lease_renewal_interval(self) -> float:
        # A third of the TTL: two renewals can fail in a row before the lease runs out.
        return self.job_lock_ttl.total_seconds() / 3

    @property
    def worker_inactive_after(self) -> timedelta:
        """This worker's own liveness TTL, sent with each of its heartbeats: the leader removes
        it once that long has passed without one (the leader's settings play no part).

        Three missed heartbeats: one slow round trip must not declare a live worker dead."""
        return timedelta(seconds=3 * self.worker_heartbeat_interval)


@dataclass(slots=True)
class Runtime:
    storage: JobStorage
    worker: str
    logger: logging.Logger
    hooks: Hooks
    settings: Settings
    # The job types this node runs, each with its executor (the scheduler's, shared).
    registry: Registry = field(default_factory=Registry)
    # Flipped by the leader loop, read by the leader-only loops.
    is_leader: bool = False
    # A plain mapping instead of a registry (the leader-only loops of the tests need no more).
    definitions: InitVar[Mapping[str, JobDefinition[Any]] | None] = None

    def __post_init__(self, definitions: Mapping[str, JobDefinition[Any]] | None) -> None:
        if definitions:
            self.registry = Registry.of(definitions)

    def type_limits(self) -> dict[str, int | None]:
        return self.registry.type_limits()

    async def job_failed(self, logger: logging.Logger, job: Job, error: BaseException) -> None:
        """Tell `on_job_failed` that `job` failed with `error` (a handler's failure, an expiry,
        a lease taken back); a hook that raises is logged on `logger` and swallowed."""
        await call_hook(logger, "on_job_failed", self.hooks.on_job_failed, job, error)
