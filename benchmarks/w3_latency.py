"""W3: an idle worker in ANOTHER process; N enqueues, one every 20 ms; how long from the moment
`enqueue` returned to the moment the handler started (p50/p95/p99/max, in ms).

Both ends read the wall clock (`time.time()`): they are different processes on one host. The
handler appends its start time to a file (`handlers.write_stamp`). A latency may be slightly
negative: a push-based store can start the job before the enqueue's reply has reached the
client. Before the measured enqueues, a few warm-up jobs prove the worker is up and listening.
For the in-memory store the worker shares the benchmark's process (and event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from benchmarks import procs
from benchmarks.app import STAMP
from benchmarks.config import Counts
from benchmarks.handlers import STAMP_FILE_ENV, read_stamps
from benchmarks.systems import ForeignClient, Memory, System
from benchmarks.w2_drain import BenchmarkError

_WARMUPS = 3
_READY_TIMEOUT = 60.0
_SETTLE_TIMEOUT = 30.0


@contextlib.asynccontextmanager
async def _idle_worker(system: System, stamps: Path, workdir: Path) -> AsyncIterator[None]:
    if isinstance(system, Memory):
        os.environ[STAMP_FILE_ENV] = str(stamps)
        async with system.worker():
            yield
        return
    env = system.worker_env()
    env[STAMP_FILE_ENV] = str(stamps)
    with procs.workers(system.worker_command(False), env, workdir, f"{system.name}-w3"):
        yield


async def _await_stamps(path: Path, wanted: set[int], timeout: float) -> dict[int, float]:
    deadline = time.monotonic() + timeout
    while True:
        seen = read_stamps(str(path))
        if wanted <= seen.keys():
            return seen
        if time.monotonic() > deadline:
            missing = sorted(wanted - seen.keys())
            raise BenchmarkError(f"handlers never started for {len(missing)} job(s): {missing[:5]}")
        await asyncio.sleep(0.01)


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile (inclusive method: within the observed range)."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def _enqueues(system: System, counts: Counts, stamps: Path) -> dict[int, float]:
    """The warm-ups, then the timed enqueues: n -> when the enqueue of stamp job n returned."""
    for k in range(_WARMUPS):
        await system.enqueue_one(STAMP, {"n": -k - 1})
        await _await_stamps(stamps, {-k - 1}, _READY_TIMEOUT)
    await asyncio.sleep(0.2)  # idle again
    returned: dict[int, float] = {}
    next_at = time.perf_counter()
    for n in range(counts.w3_enqueues):
        await system.enqueue_one(STAMP, {"n": n})
        returned[n] = time.time()
        next_at += counts.w3_gap
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    return returned


async def run(system: System, counts: Counts, workdir: Path) -> dict[str, Any]:
    await system.reset()
    stamps = workdir / f"{system.name}-stamps.txt"
    stamps.unlink(missing_ok=True)
    await system.enqueue_one(STAMP, {"n": -100})  # connect and migrate before the worker starts
    async with _idle_worker(system, stamps, workdir):
        if isinstance(system, ForeignClient):
            returned = await system.w3_enqueues(counts, _WARMUPS, stamps)
        else:
            returned = await _enqueues(system, counts, stamps)
        started = await _await_stamps(stamps, set(returned), _SETTLE_TIMEOUT)
    latencies = sorted((started[n] - returned[n]) * 1000 for n in returned)
    return {
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "max_ms": latencies[-1],
    }
