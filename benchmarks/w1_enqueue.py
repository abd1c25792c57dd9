"""W1: one client enqueues N jobs one at a time, then N more with one `enqueue_many` call (a
system with a client in another language times the same two loops there)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.app import NOOP
from benchmarks.config import Counts
from benchmarks.systems import ForeignClient, System


async def run(system: System, counts: Counts, workdir: Path) -> dict[str, Any]:
    await system.reset()
    if isinstance(system, ForeignClient):
        return await system.w1(counts)
    await system.enqueue_one(NOOP, {})  # connects, migrates: not timed
    n = counts.w1_jobs
    started = time.perf_counter()
    for _ in range(n):
        await system.enqueue_one(NOOP, {})
    one = time.perf_counter() - started
    payloads: list[dict[str, Any]] = [{} for _ in range(n)]
    started = time.perf_counter()
    await system.enqueue_many(NOOP, payloads)
    many = time.perf_counter() - started
    return {"one_per_s": n / one, "many_per_s": n / many}
