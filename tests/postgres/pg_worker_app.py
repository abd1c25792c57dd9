"""A worker for the multi-process PostgreSQL tests: `python -m tests.postgres.pg_worker_app`.

Environment: TC_PG_URL and TC_PG_SCHEMA (the store), TC_WORKER (the worker's name). Short
intervals so a killed process's leases and leadership are taken over within seconds.
"""

from __future__ import annotations

import asyncio
import os

from pydantic import BaseModel

from timecrisis import JobContext, JobScheduler, PostgresJobStorage


class Item(BaseModel):
    n: int


JOB_LOCK_TTL = 2.0
LEADER_LOCK_TTL = 1.0

scheduler = JobScheduler(
    # The tests import this module for its definitions only; nothing connects then.
    PostgresJobStorage(
        os.environ.get("TC_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        schema=os.environ.get("TC_PG_SCHEMA", "timecrisis"),
        max_pool_size=4,
    ),
    worker=os.environ.get("TC_WORKER", "pg-proc"),
    max_concurrent_jobs=20,
    job_lock_ttl=JOB_LOCK_TTL,
    leader_lock_ttl=LEADER_LOCK_TTL,
    job_processing_interval=0.2,
    worker_heartbeat_interval=0.3,
    worker_inactive_check_interval=0.5,
    expired_job_check_interval=0.5,
    shutdown_timeout=5,
)


@scheduler.job("item", concurrency=None, max_retries=5, retry_delay="50ms")
async def handle_item(data: Item, ctx: JobContext) -> int:
    await asyncio.sleep(0.002)  # long enough for a SIGKILL to land mid-job
    return data.n


if __name__ == "__main__":
    scheduler.run()
