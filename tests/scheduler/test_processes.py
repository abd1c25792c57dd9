"""Real worker processes on one SQLite file: SIGKILL mid-job loses nothing; SIGTERM stops
gracefully."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from tests.scheduler import worker_app
from timecrisis import JobRun, JobScheduler, JobStatus, RunStatus

ROOT = pathlib.Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.chaos


def _spawn(db: pathlib.Path, markers: pathlib.Path, worker: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TC_DB": str(db), "TC_MARKERS": str(markers), "TC_WORKER": worker}
    # stderr goes to a file, not a pipe: a killed child must not leave a pipe to close.
    with (markers / f"{worker}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.scheduler.worker_app"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def _wait_for(path: pathlib.Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} never appeared")
        time.sleep(0.02)


async def _producer(db: pathlib.Path) -> JobScheduler:
    from timecrisis import SQLiteJobStorage

    producer = JobScheduler(SQLiteJobStorage(db), worker="producer")
    for definition in worker_app.scheduler.job_definitions.values():
        producer.register_job(definition)
    return producer


async def test_a_worker_killed_mid_job_loses_nothing(tmp_path: pathlib.Path) -> None:
    db, markers = tmp_path / "jobs.db", tmp_path / "markers"
    markers.mkdir()
    producer = await _producer(db)
    job_id = await producer.enqueue("hang-first", {"name": "victim"})
    first = _spawn(db, markers, "first")
    second: subprocess.Popen[bytes] | None = None
    try:
        _wait_for(markers / "victim-attempt-1")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        second = _spawn(db, markers, "second")
        job = await producer.wait_for_job(job_id, timeout=60)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        await producer.close()
    assert job.status == JobStatus.COMPLETED
    assert job.result == "done by second"
    runs = await _runs(db, job_id)
    assert [(r.attempt, r.status, r.worker) for r in runs] == [
        (1, RunStatus.FAILED, "first"),
        (2, RunStatus.COMPLETED, "second"),
    ]
    assert runs[0].error is not None and "lease" in runs[0].error


async def _runs(db: pathlib.Path, job_id: str) -> list[JobRun]:
    from timecrisis import SQLiteJobStorage

    store = SQLiteJobStorage(db)
    try:
        return await store.get_job_runs(job_id)
    finally:
        await store.close()


async def test_run_stops_gracefully_on_sigterm(tmp_path: pathlib.Path) -> None:
    db, markers = tmp_path / "jobs.db", tmp_path / "markers"
    markers.mkdir()
    producer = await _producer(db)
    job_id = await producer.enqueue("until-shutdown", {"name": "graceful"})
    proc = _spawn(db, markers, "graceful-worker")
    try:
        _wait_for(markers / "graceful-started")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, (markers / "graceful-worker.log").read_text()
    assert (markers / "graceful-finished").exists()
    job = await producer.get_job(job_id)
    await producer.close()
    assert job is not None and job.status == JobStatus.COMPLETED
    assert job.result == "finished gracefully"
