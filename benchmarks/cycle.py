"""The PostgreSQL store's hot path alone, without a worker: `complete_and_claim` in a loop.

    python -m benchmarks.cycle [--batch 10,25,50] [--jobs 10000]

For each batch size: a fresh queue of no-op jobs, then one call after another, each completing
the jobs the previous one claimed and claiming as many again (what a worker at that batch size
does, minus running the jobs). Prints jobs/s and, per call, the wall time and the client CPU
time (`process_time`: psycopg, our rows into records, and the kernel's socket work). The wall
time minus the client CPU is, roughly, PostgreSQL's share: execution and the commit's WAL flush.
docs/performance.md quotes it.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import timedelta

from benchmarks.app import NOOP, STAMP
from benchmarks.config import POSTGRES_URL
from benchmarks.systems import Postgres
from benchmarks.w2_drain import prefill
from timecrisis.storage.base import ClaimParams, Completion
from timecrisis.storage.postgres import PostgresJobStorage


async def run(batch: int, jobs: int) -> str:
    system = Postgres()
    await system.reset()
    await prefill(system, NOOP, jobs + batch)
    await system.settle()
    await system.close()
    store = PostgresJobStorage(POSTGRES_URL, schema=system.schema)
    try:
        params = ClaimParams(
            worker="cycle",
            limit=batch,
            lease_ttl=timedelta(minutes=5),
            type_limits={NOOP: None, STAMP: None},
        )
        claimed = await store.claim_jobs(params)
        done = calls = 0
        wall = cpu = 0.0
        started = time.perf_counter()
        while done < jobs and claimed:
            completions = [Completion(c.ref, None) for c in claimed]
            wall_0, cpu_0 = time.perf_counter(), time.process_time()
            _, claimed = await store.complete_and_claim(completions, params)
            wall += time.perf_counter() - wall_0
            cpu += time.process_time() - cpu_0
            done += len(completions)
            calls += 1
        elapsed = time.perf_counter() - started
    finally:
        await store.close()
    return (
        f"batch {batch:>3}: {done / elapsed:>6,.0f} jobs/s; per call {1000 * wall / calls:.2f} ms "
        f"wall, {1000 * cpu / calls:.2f} ms client CPU ({calls} calls)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", default="10,25,50", help="comma-separated batch sizes")
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs completed per batch size")
    args = parser.parse_args()
    for batch in (int(b) for b in args.batch.split(",")):
        print(asyncio.run(run(batch, args.jobs)))


if __name__ == "__main__":
    main()
