"""Flask: enqueue from plain `def` views with the blocking twins; an app factory."""

import os

from flask import Flask, abort, request
from pydantic import BaseModel

from timecrisis import JobContext, JobScheduler, storage_from_url

# One scheduler per process, made at import as a Flask extension would be; the factory only
# wires the views. The worker runs beside the web servers: `timecrisis worker app:scheduler`.
scheduler = JobScheduler(
    storage_from_url(os.environ.get("TIMECRISIS_STORAGE", "sqlite:///jobs.db"))
)


class Email(BaseModel):
    to: str
    subject: str


@scheduler.job("send-email", concurrency=5)
def send_email(data: Email, ctx: JobContext) -> str:
    return f"sent {data.subject!r} to {data.to}"


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/emails")
    def queue_email() -> dict[str, str]:
        email = Email.model_validate(request.get_json())
        return {"job_id": send_email.enqueue_sync(email)}

    @app.get("/jobs/<job_id>")
    def job_status(job_id: str) -> dict[str, str]:
        job = scheduler.get_job_sync(job_id)
        if job is None:
            abort(404)
        return {"status": job.status, "result": str(job.result)}

    return app
