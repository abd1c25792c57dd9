"""The fork-mode workload's application: one type, its handler run in a child per job.

timecrisis worker benchmarks.app_fork:scheduler --storage URL --concurrency 10
"""

from __future__ import annotations

from benchmarks.handlers import Empty, noop_sync
from timecrisis import InMemoryJobStorage, JobDefinition, JobScheduler

NOOP_FORK = "noop-fork"


def build(scheduler: JobScheduler) -> JobScheduler:
    scheduler.register_job(
        JobDefinition(
            type=NOOP_FORK, schema=Empty, handle=noop_sync, concurrency=None, fork_mode=True
        )
    )
    return scheduler


scheduler = build(JobScheduler(InMemoryJobStorage(), max_concurrent_jobs=10))
