"""`timecrisis jobs cancel --terminate`: the request, with its terminate flag, is stored for the
job's worker to find at its next lease renewal, wherever it runs."""

from __future__ import annotations

import pathlib
from datetime import timedelta

from tests.cli.support import run_cli
from timecrisis import JobStatus, SQLiteJobStorage
from timecrisis.storage.base import ClaimParams, NewJob

_LEASE = timedelta(seconds=30)


async def test_cancel_terminate_on_a_running_job_stores_a_terminate_request(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "jobs.db"
    store = SQLiteJobStorage(path)
    try:
        await store.insert_jobs([NewJob(id="job-plain", type="t", data={})])
        await store.insert_jobs([NewJob(id="job-forced", type="t", data={})])
        await store.insert_jobs([NewJob(id="job-pending", type="other", data={})])
        claims = await store.claim_jobs(ClaimParams("worker-x", 10, _LEASE, {"t": None}))
    finally:
        await store.close()

    url = f"sqlite:///{path}"
    plain = run_cli("jobs", "cancel", "job-plain", "--storage", url)
    forced = run_cli("jobs", "cancel", "--terminate", "job-forced", "--storage", url)
    pending = run_cli("jobs", "cancel", "--terminate", "job-pending", "--storage", url)

    assert (plain.code, forced.code, pending.code) == (0, 0, 0), (plain, forced, pending)
    assert "ends canceled when its handler returns" in plain.stdout
    assert "interrupts the handler" in forced.stdout
    assert pending.stdout.strip() == "job job-pending canceled"
    store = SQLiteJobStorage(path)
    try:
        renewed = await store.renew_claims([c.ref for c in claims], _LEASE)
        assert renewed.cancel_requested == {"job-plain", "job-forced"}
        assert renewed.terminate_requested == {"job-forced"}
        job = await store.get_job("job-pending")
        assert job is not None and job.status == JobStatus.CANCELED
    finally:
        await store.close()
