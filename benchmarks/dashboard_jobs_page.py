"""How fast the dashboard's pages answer with a million jobs in the store.

    python benchmarks/dashboard_jobs_page.py [--jobs 1000000] [--completed 100000]
        [--requests 15] [--backends sqlite,postgres] [--max-fill-seconds 900] [--json]

Fills a SQLite file (benchmarks/results/dashboard-<jobs>.db) and a PostgreSQL schema
(`tcbench_dashboard`, or TIMECRISIS_BENCH_DASHBOARD_SCHEMA, at TIMECRISIS_BENCH_POSTGRES_URL or
the local `test` database) through the public storage API: `insert_jobs` in batches of 10,000
(three job types, 5,000 entity ids), then claims and completes the oldest `--completed` jobs in
batches. A store that already holds exactly that many jobs is reused, so a second run only
measures. Filling stops at
`--max-fill-seconds` and the numbers then say how many jobs were really there.

Each page is requested in-process through httpx's ASGI transport (the app and the store, no
network), once to warm up, then `--requests` times; the median and the slowest are reported.
Job ids are uuid5 of the job's index, so the deep cursor (the job 90 % of the way down the
newest-first list) is known without scanning.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from timecrisis.dashboard import create_app
from timecrisis.storage.base import ClaimParams, Completion, JobStorage, NewJob

RESULTS = Path(__file__).resolve().parent / "results"
POSTGRES_URL = os.environ.get(
    "TIMECRISIS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
PG_SCHEMA = os.environ.get("TIMECRISIS_BENCH_DASHBOARD_SCHEMA", "tcbench_dashboard")
NAMESPACE = uuid.UUID("8b1d6f3e-2f0a-4c7e-9a51-6d2b0c4e7f10")
BATCH = 10_000
CLAIM_BATCH = 5_000
TYPES = (("send-email", 7), ("sync-crm", 2), ("build-report", 1))  # weights out of 10


def job_id(index: int) -> str:
    return str(uuid.uuid5(NAMESPACE, str(index)))


def job_type(index: int) -> str:
    slot = index % 10
    for name, weight in TYPES:
        if slot < weight:
            return name
        slot -= weight
    raise AssertionError("weights add up to 10")


def new_job(index: int) -> NewJob:
    return NewJob(
        id=job_id(index),
        type=job_type(index),
        data={"to": f"user{index}@example.com", "template": "welcome", "n": index},
        entity_id=f"customer-{index % 5000}",
    )


async def count_jobs(storage: JobStorage) -> int:
    metrics = await storage.get_metrics()
    return metrics.pending + metrics.running + metrics.completed + metrics.failed + metrics.canceled


async def holds(storage: JobStorage, jobs: int, completed: int) -> bool:
    """Whether the store is the one this script fills for these arguments."""
    metrics = await storage.get_metrics()
    return metrics.completed == completed and await count_jobs(storage) == jobs


async def fill(storage: JobStorage, jobs: int, completed: int, deadline: float) -> dict[str, Any]:
    started = time.perf_counter()
    inserted = 0
    while inserted < jobs and time.perf_counter() < deadline:
        size = min(BATCH, jobs - inserted)
        await storage.insert_jobs([new_job(i) for i in range(inserted, inserted + size)])
        inserted += size
    insert_seconds = time.perf_counter() - started
    done = 0
    types = {name: None for name, _ in TYPES}
    while done < completed and time.perf_counter() < deadline:
        claimed = await storage.claim_jobs(
            ClaimParams(
                worker="bench",
                limit=min(CLAIM_BATCH, completed - done),
                lease_ttl=timedelta(hours=1),
                type_limits=types,
            )
        )
        if not claimed:
            break
        await storage.complete_jobs([Completion(c.ref) for c in claimed])
        done += len(claimed)
    return {
        "inserted": inserted,
        "insert_seconds": round(insert_seconds, 1),
        "inserts_per_second": round(inserted / insert_seconds) if insert_seconds else None,
        "completed": done,
        "fill_seconds": round(time.perf_counter() - started, 1),
    }


async def open_sqlite(jobs: int, completed: int) -> tuple[JobStorage, bool]:
    from timecrisis.storage.sqlite import SQLiteJobStorage

    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"dashboard-{jobs}.db"
    if path.exists():
        store = SQLiteJobStorage(path)
        if await holds(store, jobs, completed):
            return store, True
        await store.close()
        _remove_database(path)
    return SQLiteJobStorage(path), False


def _remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def open_postgres(jobs: int, completed: int) -> tuple[JobStorage, bool]:
    import psycopg
    from psycopg import sql

    from timecrisis.storage.postgres import PostgresJobStorage

    store = PostgresJobStorage(POSTGRES_URL, schema=PG_SCHEMA)
    if await holds(store, jobs, completed):
        return store, True
    await store.close()
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(PG_SCHEMA))
        )
    return PostgresJobStorage(POSTGRES_URL, schema=PG_SCHEMA), False


async def analyze(storage: JobStorage) -> None:
    """Fresh planner statistics after a bulk load, as autovacuum would gather soon after."""
    from timecrisis.storage.postgres import PostgresJobStorage

    if isinstance(storage, PostgresJobStorage):
        import psycopg
        from psycopg import sql

        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
            await conn.execute(sql.SQL("ANALYZE {}.jobs").format(sql.Identifier(PG_SCHEMA)))


async def time_pages(
    storage: JobStorage, jobs: int, completed: int, requests: int
) -> dict[str, Any]:
    # Ids are uuid5(index) and indexes grow with enqueue order: the oldest `completed` jobs are
    # completed, the rest pending. `deep` is 90 % of the way down the pending jobs.
    deep = completed + (jobs - completed) // 10
    deep_report = deep - deep % 10 + 9  # build-report is index % 10 == 9
    cases = {
        "jobs: first page": "/jobs",
        "jobs: deep cursor": f"/jobs?cursor={job_id(deep)}",
        "jobs: status=completed, first page": "/jobs?status=completed",
        "jobs: status=completed, deep cursor": f"/jobs?status=completed&cursor={job_id(100)}",
        "jobs: status=pending, deep cursor": f"/jobs?status=pending&cursor={job_id(deep)}",
        "jobs: type=build-report, deep cursor": (
            f"/jobs?type=build-report&cursor={job_id(deep_report)}"
        ),
        "jobs: entity_id filter": "/jobs?entity_id=customer-42",
        "job page": f"/jobs/{job_id(deep)}",
        "overview (get_metrics over every job)": "/",
        "metrics (Prometheus scrape)": "/metrics",
        "metrics page (/stats, the same reads)": "/stats",
        "search by id (303 to the job)": f"/search?id={job_id(deep)}",
    }
    timings: dict[str, Any] = {}
    # A tiny refresh interval: the overview shares its `get_metrics` between viewers for that
    # long, and each request here must pay for its own read.
    transport = httpx.ASGITransport(app=create_app(storage, refresh_seconds=0.001))
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
        for name, url in cases.items():
            response = await http.get(url)  # warm-up (and a check)
            assert response.status_code in (200, 303), (name, response.status_code)
            rows = response.text.count('<td class="id">')
            samples = []
            for _ in range(requests):
                started = time.perf_counter()
                response = await http.get(url)
                samples.append((time.perf_counter() - started) * 1000)
            timings[name] = {
                "median_ms": round(statistics.median(samples), 2),
                "max_ms": round(max(samples), 2),
                "rows": rows,
            }
    return timings


async def run_backend(name: str, args: argparse.Namespace) -> dict[str, Any]:
    opener = open_sqlite if name == "sqlite" else open_postgres
    storage, reused = await opener(args.jobs, args.completed)
    try:
        await storage.init()
        filled: dict[str, Any] = {"reused": reused}
        if not reused:
            deadline = time.perf_counter() + args.max_fill_seconds
            filled.update(await fill(storage, args.jobs, args.completed, deadline))
        await analyze(storage)
        present = await count_jobs(storage)
        done = filled.get("completed", args.completed)
        pages = await time_pages(storage, present, done, args.requests)
        return {"backend": name, "jobs_in_store": present, "fill": filled, "pages": pages}
    finally:
        await storage.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--completed", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=15)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--max-fill-seconds", type=float, default=900)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    results = [asyncio.run(run_backend(name.strip(), args)) for name in args.backends.split(",")]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for result in results:
        print(f"\n{result['backend']}: {result['jobs_in_store']:,} jobs; fill {result['fill']}")
        for case, timing in result["pages"].items():
            print(
                f"  {case:<42} median {timing['median_ms']:>8.2f} ms   "
                f"max {timing['max_ms']:>8.2f} ms   rows {timing['rows']}"
            )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
