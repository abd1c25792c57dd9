"""Flow control's cost (docs/flow-control.md), measured in one process:

    python -m benchmarks.flow_control drain [--jobs 5000] [--repeats 3] [--stores sqlite,postgres]
    python -m benchmarks.flow_control keys [--jobs 100000] [--calls 300] [--stores ...]

- `drain`: W2's shape (a backlog of no-op jobs, one worker at the defaults, concurrency 10)
  with and without a rate limit far above the drain rate ("1000000/m"), alternating the two so
  the machine's drift hits both; prints the median jobs/s of each and the difference. The
  limited type also pays its type lock and its `rate_limit_starts` row per claim.
- `keys`: the claim's cost with a keyed type (`key_concurrency=2`) and `--jobs` pending jobs
  spread over 0 (no key), 1,000 and 100,000 distinct keys, and without `key_concurrency`:
  `complete_and_claim` of 10 jobs at a time (as a worker does), ms per call. A key's check is
  two index probes per candidate (migration 0007), so the number of distinct keys should not
  show.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import psycopg

from benchmarks.config import POSTGRES_URL
from benchmarks.handlers import Empty, noop
from timecrisis import JobDefinition, JobScheduler, JobStorage
from timecrisis.storage._common import new_id
from timecrisis.storage.base import ClaimParams, Completion, NewJob
from timecrisis.storage.postgres import PostgresJobStorage
from timecrisis.storage.sqlite import SQLiteJobStorage

NOOP = "noop"
FAR_ABOVE = "1000000/m"  # 16,667 starts/s: far above any drain rate here
BATCH = 5_000


@asynccontextmanager
async def fresh_store(kind: str) -> AsyncIterator[JobStorage]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            store = SQLiteJobStorage(Path(folder) / "bench.db")
            try:
                yield store
            finally:
                await store.close()
        return
    schema = f"tcflow_{uuid.uuid4().hex[:8]}"
    store = PostgresJobStorage(POSTGRES_URL, schema=schema)
    try:
        yield store
    finally:
        await store.close()
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def _analyze(store: JobStorage) -> None:
    """As W2 does after its prefill: planner statistics that know the backlog."""
    if isinstance(store, PostgresJobStorage):
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
            await conn.execute(f'ANALYZE "{store.schema}".jobs')


async def _prefill(store: JobStorage, jobs: int, key: Callable[[int], str | None]) -> None:
    for start in range(0, jobs, BATCH):
        batch = [
            NewJob(id=new_id(), type=NOOP, data={}, concurrency_key=key(n))
            for n in range(start, min(jobs, start + BATCH))
        ]
        await store.insert_jobs(batch)
    await _analyze(store)


async def drain_once(kind: str, jobs: int, rate_limit: str | None) -> float:
    async with fresh_store(kind) as store:
        await store.init()
        await _prefill(store, jobs, lambda n: None)
        scheduler = JobScheduler(store, max_concurrent_jobs=10)
        scheduler.register_job(
            JobDefinition(
                type=NOOP, schema=Empty, handle=noop, concurrency=None, rate_limit=rate_limit
            )
        )
        started = time.perf_counter()
        done = await scheduler.drain(timeout=600)
        elapsed = time.perf_counter() - started
        assert len(done) == jobs, len(done)
        return jobs / elapsed


async def drain(kinds: list[str], jobs: int, repeats: int) -> None:
    for kind in kinds:
        rates: dict[str | None, list[float]] = {None: [], FAR_ABOVE: []}
        for n in range(repeats):
            order = [None, FAR_ABOVE] if n % 2 == 0 else [FAR_ABOVE, None]
            for rate_limit in order:
                rates[rate_limit].append(await drain_once(kind, jobs, rate_limit))
        plain, limited = statistics.median(rates[None]), statistics.median(rates[FAR_ABOVE])
        print(
            f"{kind:>8} drain of {jobs:,}: no rate limit {plain:,.0f} jobs/s "
            f"{_runs(rates[None])}; rate_limit={FAR_ABOVE!r} {limited:,.0f} jobs/s "
            f"{_runs(rates[FAR_ABOVE])}; {100 * (limited - plain) / plain:+.1f} %"
        )


def _runs(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:,.0f}" for v in values) + ")"


async def keys_once(kind: str, jobs: int, distinct: int | None, calls: int) -> str:
    """`distinct=None`: the baseline, a type without `key_concurrency` and jobs without keys."""
    async with fresh_store(kind) as store:
        await store.init()
        await _prefill(store, jobs, lambda n: f"key:{n % distinct}" if distinct else None)
        params = ClaimParams(
            worker="bench",
            limit=10,
            lease_ttl=timedelta(minutes=5),
            type_limits={NOOP: None},
            key_limits={} if distinct is None else {NOOP: 2},
        )
        claimed = await store.claim_jobs(params)
        timings: list[float] = []
        for _ in range(calls):
            completions = [Completion(c.ref, None) for c in claimed]
            started = time.perf_counter()
            if hasattr(store, "complete_and_claim"):
                _, claimed = await store.complete_and_claim(completions, params)
            else:
                await store.complete_jobs(completions)
                claimed = await store.claim_jobs(params)
            timings.append(time.perf_counter() - started)
            assert len(claimed) == 10, len(claimed)
        median = 1000 * statistics.median(timings)
        p95 = 1000 * sorted(timings)[int(0.95 * len(timings))]
        keyed = "no key_concurrency" if distinct is None else f"{distinct:>7,} distinct keys"
        return (
            f"{kind:>8} {jobs:,} pending, {keyed}: "
            f"complete_and_claim(10) median {median:.2f} ms, p95 {p95:.2f} ms ({calls} calls)"
        )


async def keys(kinds: list[str], jobs: int, calls: int) -> None:
    for kind in kinds:
        for distinct in (None, 0, 1_000, 100_000):
            print(await keys_once(kind, jobs, distinct, calls))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["drain", "keys"])
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args()
    kinds = args.stores.split(",")
    if args.what == "drain":
        asyncio.run(drain(kinds, args.jobs or 5_000, args.repeats))
    else:
        asyncio.run(keys(kinds, args.jobs or 100_000, args.calls))


if __name__ == "__main__":
    main()
