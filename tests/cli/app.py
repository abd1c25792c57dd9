"""The application the CLI tests run with `timecrisis worker tests.cli.app:scheduler`.

Its own store is a SQLite file that the tests never use: every test passes `--storage`, which is
the path under test. The fill helpers reuse its definitions to put jobs into a store.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from timecrisis import JobContext, JobScheduler, NonRetryableError, SQLiteJobStorage


class Greeting(BaseModel):
    name: str


class Nothing(BaseModel):
    pass


scheduler = JobScheduler(
    # Nothing opens this file unless a worker runs without --storage.
    SQLiteJobStorage("cli-app-default.db"),
    worker="cli-app",
    job_processing_interval=0.1,
    job_scheduling_interval=0.2,
    worker_heartbeat_interval=0.2,
    leader_lock_ttl=1,
    shutdown_timeout=30,
)


@scheduler.job("greet", concurrency=None)
async def greet(data: Greeting, ctx: JobContext) -> dict[str, str]:
    await ctx.log("info", f"hello {data.name}", {"name": data.name})
    await ctx.update_progress(50)
    return {"greeted": data.name}


@scheduler.job("boom", concurrency=None)
async def boom(data: Nothing, ctx: JobContext) -> None:
    await ctx.log("error", "about to fail")
    raise NonRetryableError("the upstream said no")


@scheduler.job("stubborn", concurrency=None)
async def stubborn(data: Nothing, ctx: JobContext) -> str:
    """Ignores shutdown: only a forced stop (a second signal) takes it back."""
    await ctx.log("info", "started")
    await asyncio.sleep(3600)
    return "never"


@scheduler.job("polite", concurrency=None)
async def polite(data: Nothing, ctx: JobContext) -> str:
    """Finishes as soon as the worker starts stopping."""
    await ctx.log("info", "started")
    while not ctx.is_shutting_down:
        await asyncio.sleep(0.02)
    return "stopped politely"
