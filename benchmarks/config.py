"""What the benchmark runs with: counts (full or quick), where the stores live, time bounds.

Everything can be overridden from the environment, so `make bench` runs unchanged on a fresh
machine with PostgreSQL on 127.0.0.1:5432 (trust auth) and Redis on 127.0.0.1:6379:

- `TIMECRISIS_BENCH_POSTGRES_URL` (default `postgresql://postgres@127.0.0.1:5432/timecrisis_bench`;
  the database is created if missing, through the `postgres` database of the same server);
- `TIMECRISIS_BENCH_REDIS_URL` (default `redis://127.0.0.1:6379/9`; SAQ's keys are namespaced
  `saq:tcbench...`, BullMQ's `tcbench-bullmq:...`, and only those are ever deleted);
- `BENCH_QUICK=1`: the smoke-run counts below.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
CACHE = RESULTS / "cache"

POSTGRES_URL = os.environ.get(
    "TIMECRISIS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/timecrisis_bench"
)
REDIS_URL = os.environ.get("TIMECRISIS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")

CONCURRENCY = 10
"""Jobs one worker process runs at once, for every system (the issue's setting)."""

POLL = 0.005
"""Seconds between two looks at the store while waiting for a drain to finish."""


@dataclass(frozen=True, slots=True)
class Counts:
    w1_jobs: int  # one at a time, then the same number with enqueue_many
    w2_jobs: int
    w3_enqueues: int
    w3_gap: float  # seconds between two W3 enqueues
    w4_jobs: int
    w5_history: int  # completed jobs already in the store
    fork_jobs: int
    w6_per_thread: int  # enqueue_sync calls per thread (8 threads), and enqueues per task
    runs: int  # medians of this many runs
    case_timeout: float  # seconds one case (one subprocess) may take, setup included
    prefill_timeout: float  # seconds the one-off W5 history prefill may take


FULL = Counts(
    w1_jobs=5_000,
    w2_jobs=10_000,
    w3_enqueues=200,
    w3_gap=0.020,
    w4_jobs=20_000,
    w5_history=1_000_000,
    fork_jobs=1_000,
    w6_per_thread=1_000,
    runs=3,
    case_timeout=420.0,  # the slowest peer drains W4's 20,000 jobs at ~100/s on a busy box
    prefill_timeout=900.0,
)

QUICK = Counts(
    w1_jobs=500,
    w2_jobs=1_000,
    w3_enqueues=40,
    w3_gap=0.020,
    w4_jobs=2_000,
    w5_history=50_000,
    fork_jobs=100,
    w6_per_thread=200,
    runs=1,
    case_timeout=60.0,
    prefill_timeout=300.0,
)


def counts(quick: bool) -> Counts:
    return QUICK if quick else FULL


def quick_from_env() -> bool:
    return os.environ.get("BENCH_QUICK", "").strip().lower() not in ("", "0", "false", "no")
