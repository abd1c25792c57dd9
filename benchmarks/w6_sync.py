"""W6: the blocking twins. 8 threads each call `enqueue_sync` N times (a WSGI app's request
threads), next to the async path: 8 tasks on one loop each awaiting `enqueue` N times. Both go
through a producer that never starts, so the twins run on its private loop (on PostgreSQL,
with a clone of the store: a pool of its own; see docs/sync.md)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.app import NOOP
from benchmarks.config import Counts
from benchmarks.systems import System

THREADS = 8


async def run(system: System, counts: Counts, workdir: Path) -> dict[str, Any]:
    await system.reset()
    producer = system.producer()  # type: ignore[attr-defined] # ours only (SYSTEMS["w6"])
    n = counts.w6_per_thread
    await producer.enqueue(NOOP, {})  # connects, migrates: not timed
    await asyncio.to_thread(producer.enqueue_sync, NOOP, {})  # starts the private loop

    async def task() -> None:
        for _ in range(n):
            await producer.enqueue(NOOP, {})

    started = time.perf_counter()
    await asyncio.gather(*(task() for _ in range(THREADS)))
    async_s = time.perf_counter() - started

    def thread() -> None:
        for _ in range(n):
            producer.enqueue_sync(NOOP, {})

    def threads() -> float:
        with ThreadPoolExecutor(THREADS) as pool:
            began = time.perf_counter()
            for future in [pool.submit(thread) for _ in range(THREADS)]:
                future.result()
            return time.perf_counter() - began

    sync_s = await asyncio.to_thread(threads)
    await asyncio.to_thread(producer.close_sync)
    total = THREADS * n
    return {"sync_per_s": total / sync_s, "async_per_s": total / async_s, "jobs": total}
