"""Flow control at the defaults (DESIGN §4, "Defaults are the product"): with a "2/s" rate
limit the starts are spaced by the window, and the worker resumes as the window frees, not
after the 5 s `job_processing_interval`; a concurrency key runs one job at a time while the
other keys run. Run with `-s` to see the figures."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

from tests.defaults.conftest import DefaultSchedulerFactory
from tests.scheduler.conftest import Payload
from timecrisis import JobContext, JobStatus, JobStorage

LATE = 1.0  # seconds a window may open late (machine noise), far below the 5 s interval


async def test_rate_limited_starts_are_spaced_and_resume_when_the_window_frees(
    store: JobStorage, default_scheduler: DefaultSchedulerFactory
) -> None:
    scheduler = default_scheduler()

    @scheduler.job("api-call", concurrency=None, rate_limit="2/s")
    async def api_call(data: Payload, ctx: JobContext) -> None:
        pass

    async with scheduler:
        ids = await scheduler.enqueue_many("api-call", [{"n": n} for n in range(6)])
        done = [await scheduler.wait_for_job(i, timeout=3 * (2 + LATE)) for i in ids]

    assert {job.status for job in done} == {JobStatus.COMPLETED}
    starts = sorted(job.started_at for job in done if job.started_at is not None)
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[2:], strict=False)]
    span = (starts[-1] - starts[0]).total_seconds()
    print(f"\n[{type(store).__name__}] 2/s: 6 starts over {span:.3f} s; 2-apart gaps {gaps}")
    assert min(gaps) >= 0.95  # never 3 starts within one second
    assert span < 2 + LATE  # three windows, each opened when the last one freed


async def test_a_concurrency_key_runs_one_job_at_a_time_while_other_keys_run(
    store: JobStorage, default_scheduler: DefaultSchedulerFactory
) -> None:
    scheduler = default_scheduler()
    running: Counter[str] = Counter()
    peaks: Counter[str] = Counter()
    together = 0

    @scheduler.job("sync-user", concurrency=None, key_concurrency=1)
    async def sync_user(data: Payload, ctx: JobContext) -> None:
        nonlocal together
        running[data.text] += 1
        peaks[data.text] = max(peaks[data.text], running[data.text])
        together = max(together, sum(running.values()))
        await asyncio.sleep(0.3)
        running[data.text] -= 1

    async with scheduler:
        ids = [
            await sync_user.enqueue({"text": user}, concurrency_key=f"user:{user}")
            for user in ["a", "a", "a", "b", "c"]
        ]
        done = [await scheduler.wait_for_job(i, timeout=15) for i in ids]

    assert {job.status for job in done} == {JobStatus.COMPLETED}
    assert peaks["a"] == 1
    assert together >= 3  # "a", "b" and "c" at once
    a_jobs = sorted((j for j in done if j.concurrency_key == "user:a"), key=lambda j: j.run_at)
    # Each "a" started when the one before it finished: by the freed slot's wake-up, not 5 s.
    for before, after in itertools.pairwise(a_jobs):
        assert before.finished_at is not None and after.started_at is not None
        assert (after.started_at - before.finished_at).total_seconds() < LATE
