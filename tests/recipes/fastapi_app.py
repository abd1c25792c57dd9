"""FastAPI: enqueue from async endpoints, with the worker in the web process or beside it."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from timecrisis import JobContext, JobScheduler, storage_from_url

scheduler = JobScheduler(
    storage_from_url(os.environ.get("TIMECRISIS_STORAGE", "sqlite:///jobs.db"))
)
# RUN_WORKER=1 works the jobs off in this process too (a small app); otherwise run
# `timecrisis worker app:scheduler` next to the web servers, which then only enqueue.
RUN_WORKER = os.environ.get("RUN_WORKER") == "1"


class Email(BaseModel):
    to: str
    subject: str


@scheduler.job("send-email", concurrency=5)
async def send_email(data: Email, ctx: JobContext) -> str:
    return f"sent {data.subject!r} to {data.to}"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    if RUN_WORKER:
        await scheduler.start()
    yield
    await scheduler.close()  # stops the worker, if started, and closes the store


app = FastAPI(lifespan=lifespan)


@app.post("/emails")
async def queue_email(email: Email) -> dict[str, str]:
    return {"job_id": await send_email.enqueue(email)}


@app.get("/jobs/{job_id}")
async def job_status(job_id: str) -> dict[str, str]:
    job = await scheduler.get_job(job_id)
    if job is None:
        raise HTTPException(status_code=404, detail="no such job")
    return {"status": job.status, "result": str(job.result)}
