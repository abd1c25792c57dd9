"""W2 (and W4, W5, fork mode): N jobs already enqueued; worker processes drain them.

The clock starts just before the worker processes are spawned and stops when the store says
nothing is pending or running (the benchmark asks the store itself every few ms), so the rate
includes interpreter start, imports, connecting and the first claim: what a user sees when a
worker comes up on a backlog. Then the store must count every job as completed. Peak RSS is the
largest VmHWM among the workers, read before they are stopped.

The in-memory store cannot be shared between processes: its worker runs in the benchmark's own
process and the clock starts at `start()`.

After the prefill, PostgreSQL stores (ours and Procrastinate's) are ANALYZEd, as autovacuum
would have done on a live database: a planner that believes the queue empty picks plans that
no long-running deployment sees (issue 5 measured Procrastinate at 710 jobs/s with fresh
statistics and 180 with stale ones).
"""

from __future__ import annotations

import asyncio
import resource
import time
from pathlib import Path
from typing import Any

from benchmarks import procs
from benchmarks.app import NOOP
from benchmarks.app_fork import NOOP_FORK
from benchmarks.config import POLL
from benchmarks.systems import Memory, System

_PREFILL_BATCH = 5_000


class BenchmarkError(RuntimeError):
    pass


async def prefill(system: System, job_type: str, jobs: int) -> None:
    for start in range(0, jobs, _PREFILL_BATCH):
        size = min(_PREFILL_BATCH, jobs - start)
        await system.enqueue_many(job_type, [{} for _ in range(size)])


async def drain(
    system: System,
    *,
    jobs: int,
    workers: int,
    fork: bool,
    timeout: float,
    workdir: Path,
    reset: bool = True,
) -> dict[str, Any]:
    if reset:
        await system.reset()
    await prefill(system, NOOP_FORK if fork else NOOP, jobs)
    await system.settle()
    if isinstance(system, Memory):
        started = time.perf_counter()
        async with system.worker():
            await _wait(system, [], timeout)
            elapsed = time.perf_counter() - started
        rss: float | None = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    else:
        await system.close()  # the producer's connections are not needed while draining
        started = time.perf_counter()
        argv, env = system.worker_command(fork), system.worker_env()
        with procs.workers(argv, env, workdir, system.name, workers) as running:
            await _wait(system, running, timeout)
            elapsed = time.perf_counter() - started
            peaks = [w.peak_rss_mb() for w in running]
        rss = max((p for p in peaks if p is not None), default=None)
    done = await system.finished()
    if done != jobs:
        raise BenchmarkError(f"{system.name}: {done} of {jobs} jobs completed")
    return {"jobs_per_s": jobs / elapsed, "seconds": elapsed, "rss_mb": rss}


async def fork_drain(system: System, *, jobs: int, timeout: float, workdir: Path) -> dict[str, Any]:
    """Fork mode's cost per job: the same drain of `jobs` without fork mode, then with it, back
    to back. Both carry the same worker start-up (about 0.35 s on PostgreSQL), so their
    difference is what fork mode adds: per job, plus the fork server's own start. Comparing
    with W2's rate instead (10 times the jobs) charged 90 % of the start-up to fork mode,
    0.3 ms per job at 1,000 jobs."""
    plain = await drain(
        system, jobs=jobs, workers=1, fork=False, timeout=timeout / 2, workdir=workdir
    )
    forked = await drain(
        system, jobs=jobs, workers=1, fork=True, timeout=timeout / 2, workdir=workdir
    )
    overhead_ms = 1000 * (forked["seconds"] - plain["seconds"]) / jobs
    return {**forked, "plain_jobs_per_s": plain["jobs_per_s"], "overhead_ms": overhead_ms}


async def _wait(system: System, running: list[procs.WorkerProcess], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while await system.outstanding():
        for worker in running:
            if not worker.alive():
                raise BenchmarkError(f"a worker exited early:\n{worker.stderr_tail()}")
        if time.monotonic() > deadline:
            raise BenchmarkError(f"{system.name}: not drained after {timeout:.0f}s")
        await asyncio.sleep(POLL)
