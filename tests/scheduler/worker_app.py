"""A worker application for the multi-process tests: `python -m tests.scheduler.worker_app`.

Environment: TC_DB (SQLite path), TC_MARKERS (a folder for marker files), TC_MODE (`run` blocks
in `scheduler.run()`; `serve` is the same), TC_WORKER (worker name).
"""

from __future__ import annotations

import asyncio
import os
import pathlib

from pydantic import BaseModel

from timecrisis import JobContext, JobScheduler, SQLiteJobStorage


class Step(BaseModel):
    name: str


MARKERS = pathlib.Path(os.environ.get("TC_MARKERS", "."))

scheduler = JobScheduler(
    # The tests import this module for its definitions only; nothing opens the file then.
    SQLiteJobStorage(os.environ.get("TC_DB", "worker-app.db")),
    worker=os.environ.get("TC_WORKER", "proc"),
    job_lock_ttl=2,
    leader_lock_ttl=1,
    job_processing_interval=0.2,
    worker_heartbeat_interval=0.3,
    worker_inactive_check_interval=0.3,
    expired_job_check_interval=0.5,
    shutdown_timeout=10,
)


@scheduler.job("hang-first", concurrency=None, max_retries=2, retry_delay="50ms")
async def hang_first(data: Step, ctx: JobContext) -> str:
    (MARKERS / f"{data.name}-attempt-{ctx.attempt}").write_text(scheduler.worker)
    if ctx.attempt == 1:
        await asyncio.sleep(3600)  # killed here
    return f"done by {scheduler.worker}"


@scheduler.job("until-shutdown", concurrency=None)
async def until_shutdown(data: Step, ctx: JobContext) -> str:
    (MARKERS / f"{data.name}-started").write_text("1")
    while not ctx.is_shutting_down:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    (MARKERS / f"{data.name}-finished").write_text("1")
    return "finished gracefully"


if __name__ == "__main__":
    scheduler.run()
