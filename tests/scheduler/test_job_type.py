"""`@scheduler.job(...)` returns a `JobType[Model]` (DESIGN §4, "Job handles"): enqueue through
it, read its type and definition, and call it to run the handler itself."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from tests.scheduler.conftest import SchedulerFactory
from timecrisis import JobContext, JobDefinition, JobStatus, JobStorage, JobType
from timecrisis.testing import TestContext

WAIT = 30.0


class Email(BaseModel):
    to: str
    subject: str = "hi"


async def test_the_handle_enqueues_and_runs(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)

    @scheduler.job("send-email", concurrency=5, priority=3)
    async def send_email(data: Email, ctx: JobContext) -> str:
        """Send one email."""
        await ctx.log("info", f"to {data.to}")
        return data.to

    assert isinstance(send_email, JobType)
    assert send_email.type == "send-email"
    assert send_email.definition is scheduler.get_job_definition("send-email")
    assert isinstance(send_email.definition, JobDefinition)
    assert (send_email.definition.schema, send_email.definition.priority) == (Email, 3)
    assert send_email.__name__ == "send_email"
    assert send_email.__doc__ == "Send one email."

    one = await send_email.enqueue(Email(to="a@b.co"), priority=7)
    two, three = await send_email.enqueue_many([Email(to="c@d.co"), {"to": "e@f.co"}])
    four = await asyncio.to_thread(send_email.enqueue_sync, Email(to="g@h.co"))
    [five] = await asyncio.to_thread(send_email.enqueue_many_sync, [{"to": "i@j.co"}])
    job = await scheduler.get_job(one)
    assert job is not None and (job.type, job.priority) == ("send-email", 7)

    async with scheduler:
        done = [
            await scheduler.wait_for_job(i, timeout=WAIT) for i in (one, two, three, four, five)
        ]
    assert [j.result for j in done] == ["a@b.co", "c@d.co", "e@f.co", "g@h.co", "i@j.co"]
    assert {j.status for j in done} == {JobStatus.COMPLETED}
    await scheduler.close()  # and the twins' private thread


async def test_calling_the_handle_runs_the_handler(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)

    @scheduler.job("async-one", concurrency=None)
    async def async_one(data: Email, ctx: JobContext) -> str:
        await ctx.log("warning", "careful", {"to": data.to})
        await ctx.update_progress(50)
        return data.to.upper()

    @scheduler.job("sync-one", concurrency=None, schema=Email)
    def sync_one(data: Email, ctx: JobContext) -> str:
        ctx.log_sync("info", "from a thread")
        return data.subject

    ctx = TestContext(Email(to="x@y.z"))
    assert await async_one(Email(to="x@y.z"), ctx) == "X@Y.Z"
    assert ctx.logs == [("warn", "careful", {"to": "x@y.z"})]
    assert ctx.progress == [50.0]
    assert sync_one(Email(to="x@y.z", subject="s"), TestContext()) == "s"
    assert len(await scheduler.list_jobs()) == 0  # nothing was enqueued
