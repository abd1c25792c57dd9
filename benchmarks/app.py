"""The timecrisis application the benchmark's worker processes run:

    timecrisis worker benchmarks.app:scheduler --storage URL --concurrency 10

The store given here is a placeholder that is never opened: `--storage` replaces it. Every
setting is the library default, as a user gets it; the job types have no per-type limit (the
peers have none either). The fork-mode type lives in `app_fork`, so the other workloads never
start a fork server.
"""

from __future__ import annotations

from benchmarks.handlers import Empty, Stamp, noop, stamp
from timecrisis import InMemoryJobStorage, JobDefinition, JobScheduler

NOOP = "noop"
STAMP = "stamp"


def build(scheduler: JobScheduler) -> JobScheduler:
    scheduler.register_job(JobDefinition(type=NOOP, schema=Empty, handle=noop, concurrency=None))
    scheduler.register_job(JobDefinition(type=STAMP, schema=Stamp, handle=stamp, concurrency=None))
    return scheduler


scheduler = build(JobScheduler(InMemoryJobStorage(), max_concurrent_jobs=10))
