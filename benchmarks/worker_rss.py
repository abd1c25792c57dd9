"""The memory of an idle `timecrisis worker` process, and after it drained a backlog.

    python -m benchmarks.worker_rss [--jobs 10000] [--runs 3] [--json]

Each run starts `timecrisis worker app:scheduler` (the CLI, as a deployment would) on a fresh
SQLite file, with two job types (an `async def` and a `def` no-op), reads its `VmRSS` from
/proc/<pid>/status once it is idle (it has registered and its RSS no longer grows), then enqueues
`--jobs` no-op jobs from this process, waits until the store holds none pending or running, and
reads `VmRSS` (and the peak, `VmHWM`) again. `make bench` runs it after the workloads.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from timecrisis import JobScheduler, JobStatus

_APP = textwrap.dedent(
    """
    from pydantic import BaseModel
    from timecrisis import JobContext, JobScheduler, SQLiteJobStorage

    scheduler = JobScheduler(SQLiteJobStorage({db!r}))


    class Empty(BaseModel):
        pass


    @scheduler.job("noop_async", schema=Empty, concurrency=None)
    async def noop_async(data: Empty, ctx: JobContext) -> None:
        return None


    @scheduler.job("noop_sync", schema=Empty, concurrency=None)
    def noop_sync(data: Empty, ctx: JobContext) -> None:
        return None
    """
)


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def _wait_idle(pid: int, timeout: float = 60) -> int:
    """The RSS (KiB) once it has been stable for half a second."""
    deadline = time.monotonic() + timeout
    last, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        rss = _status_kib(pid, "VmRSS")
        if rss != last:
            last, stable_since = rss, time.monotonic()
        elif time.monotonic() - stable_since >= 0.5:
            return rss
        time.sleep(0.05)
    return last


async def _enqueue_and_drain(app: Path, jobs: int, timeout: float) -> None:
    # The app's own scheduler, never started: it only enqueues and asks.
    spec = importlib.util.spec_from_file_location("tcbench_rss_app", app)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {app}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    producer: JobScheduler = module.scheduler
    try:
        half = jobs // 2
        await producer.enqueue_many("noop_async", [{}] * half)
        await producer.enqueue_many("noop_sync", [{}] * (jobs - half))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pending = await producer.list_jobs(status=JobStatus.PENDING, limit=1)
            running = await producer.list_jobs(status=JobStatus.RUNNING, limit=1)
            if not pending and not running:
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"the worker did not drain {jobs} jobs in {timeout} s")
    finally:
        await producer.storage.close()


def measure_once(jobs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="tcbench-rss-") as tmp:
        directory = Path(tmp)
        db = directory / "jobs.db"
        (directory / "app.py").write_text(_APP.format(db=str(db)))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(directory), *sys.path])}
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "timecrisis.cli",
                "worker",
                "app:scheduler",
                "--log-level",
                "warning",
            ],
            cwd=directory,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        try:
            idle = _wait_idle(worker.pid)
            asyncio.run(_enqueue_and_drain(directory / "app.py", jobs, timeout=600))
            drained = _status_kib(worker.pid, "VmRSS")
            peak = _status_kib(worker.pid, "VmHWM")
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    return {"idle_mib": idle / 1024, "drained_mib": drained / 1024, "peak_mib": peak / 1024}


def measure(jobs: int, runs: int) -> dict[str, Any]:
    samples = [measure_once(jobs) for _ in range(runs)]
    median = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
    return {"jobs": jobs, "runs": samples, "median": median}


def describe(result: dict[str, Any]) -> str:
    m = result["median"]
    return (
        f"worker RSS (SQLite, `timecrisis worker`): idle {m['idle_mib']:.1f} MiB, "
        f"after draining {result['jobs']:,} jobs {m['drained_mib']:.1f} MiB "
        f"(peak {m['peak_mib']:.1f} MiB), median of {len(result['runs'])}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print only the JSON")
    args = parser.parse_args()
    result = measure(args.jobs, args.runs)
    if not args.json:
        print(describe(result))
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
