"""The blocking twins (DESIGN §4, "Sync callers"): callable from any thread, with or without a
running event loop, many threads at once, on every store; a `RuntimeError` on the scheduler's
own loop; no thread left behind once the scheduler is closed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.pg_support import drop_schema, fresh_schema, require_postgres
from tests.scheduler.conftest import Payload, SchedulerFactory
from timecrisis import (
    JobContext,
    JobScheduler,
    JobStatus,
    JobStorage,
    JobValidationError,
)

WAIT = 30.0  # a safety net, never a timing assertion


def _sync_threads(*schedulers: JobScheduler) -> list[str]:
    """The private-loop threads of these schedulers (other tests' may still be alive)."""
    names = {f"timecrisis-sync-{s.worker}" for s in schedulers}
    return [t.name for t in threading.enumerate() if t.name in names]


def _register(scheduler: JobScheduler) -> None:
    @scheduler.job("double", concurrency=None)
    async def double(data: Payload, ctx: JobContext) -> int:
        return data.n * 2


async def test_many_threads_enqueue_at_once_without_a_loop(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    producer = make_scheduler(store)
    _register(producer)

    def produce(thread: int) -> list[str]:
        return [producer.enqueue_sync("double", {"n": thread * 100 + i}) for i in range(25)]

    # Eight plain threads (no event loop in any of them), all at once.
    with ThreadPoolExecutor(8) as pool:
        batches = await asyncio.wrap_future(
            asyncio.get_running_loop().run_in_executor(
                None, lambda: list(pool.map(produce, range(8)))
            )
        )
    ids = [job_id for batch in batches for job_id in batch]
    assert len(set(ids)) == 200
    jobs = [await producer.get_job(job_id) for job_id in ids]
    assert {(j.type, j.status) for j in jobs if j is not None} == {("double", JobStatus.PENDING)}
    assert sorted(j.data["n"] for j in jobs if j is not None) == sorted(
        t * 100 + i for t in range(8) for i in range(25)
    )

    # A worker on the same store runs what the threads enqueued.
    worker = make_scheduler(store)
    _register(worker)
    async with worker:
        done = await worker.wait_for_job(ids[-1], timeout=WAIT)
    assert (done.status, done.result) == (JobStatus.COMPLETED, 2 * done.data["n"])
    await asyncio.to_thread(producer.close_sync)
    assert _sync_threads(producer) == []


async def test_twins_called_on_a_running_loop_of_the_callers(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    """This test's coroutine runs on a loop (pytest's); the scheduler is not started on it, so
    the twins block this loop for their call and work."""
    scheduler = make_scheduler(store)
    _register(scheduler)
    job_id = scheduler.enqueue_sync("double", Payload(n=4))
    [second, third] = scheduler.enqueue_many_sync("double", [{"n": 5}, {"n": 6}])
    job = scheduler.get_job_sync(job_id)
    assert job is not None and job.data == {"n": 4, "text": ""}
    assert scheduler.cancel_job_sync(second) is True
    assert scheduler.get_job_sync(second).status == JobStatus.CANCELED  # type: ignore[union-attr]
    assert scheduler.retry_job_sync(second) is True
    schedule_id = scheduler.schedule_sync(
        "hourly", "double", {"n": 1}, schedule_type="interval", schedule_value="1h"
    )
    stored = await scheduler.get_scheduled_job("hourly")
    assert stored is not None and stored.id == schedule_id
    # The same errors as the async methods, and nothing stored.
    with pytest.raises(JobValidationError):
        scheduler.enqueue_sync("double", {"n": "not a number"})
    assert len(await scheduler.list_jobs()) == 3
    assert scheduler.get_job_sync("no-such-job") is None

    async with scheduler:
        # wait_for_job_sync from a thread, while the scheduler runs on this loop.
        done = await asyncio.to_thread(scheduler.wait_for_job_sync, third, WAIT)
    assert (done.status, done.result) == (JobStatus.COMPLETED, 12)
    await scheduler.close()
    assert _sync_threads(scheduler) == []


async def test_a_thread_with_its_own_event_loop(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)
    _register(scheduler)

    def in_a_thread_with_a_loop() -> str:
        async def main() -> str:
            return scheduler.enqueue_sync("double", {"n": 7})

        return asyncio.run(main())

    job_id = await asyncio.to_thread(in_a_thread_with_a_loop)
    assert (await scheduler.get_job(job_id)) is not None
    await asyncio.to_thread(scheduler.close_sync)
    assert _sync_threads(scheduler) == []


async def test_on_a_started_scheduler_the_twins_use_its_loop(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    """A plain `def` handler (a worker thread) enqueues with a twin; an async handler on the
    scheduler's own loop gets a clear RuntimeError."""
    scheduler = make_scheduler(store)
    _register(scheduler)

    @scheduler.job("fan-out", concurrency=None)
    def fan_out(data: Payload, ctx: JobContext) -> str:
        return scheduler.enqueue_sync("double", {"n": data.n})

    @scheduler.job("misuse", concurrency=None)
    async def misuse(data: Payload, ctx: JobContext) -> str:
        return scheduler.enqueue_sync("double", {"n": data.n})

    async with scheduler:
        parent = await scheduler.enqueue("fan-out", {"n": 21})
        done = await scheduler.wait_for_job(parent, timeout=WAIT)
        assert done.status == JobStatus.COMPLETED
        child = await scheduler.wait_for_job(done.result, timeout=WAIT)
        assert child.result == 42

        wrong = await scheduler.enqueue("misuse", {"n": 1})
        failed = await scheduler.wait_for_job(wrong, timeout=WAIT)
    assert failed.status == JobStatus.FAILED
    [run] = await scheduler.get_job_runs(wrong)
    assert run.error is not None
    assert run.error.startswith("RuntimeError: a *_sync method was called on the scheduler's own")
    assert "await" in run.error
    # Routed to the running loop: no private loop was ever started.
    assert _sync_threads(scheduler) == []


async def test_the_twins_keep_the_async_signatures() -> None:
    import inspect

    for name in (
        "enqueue",
        "enqueue_many",
        "schedule",
        "get_job",
        "wait_for_job",
        "cancel_job",
        "retry_job",
    ):
        twin = getattr(JobScheduler, f"{name}_sync")
        assert inspect.signature(twin) == inspect.signature(getattr(JobScheduler, name)), name
        assert not inspect.iscoroutinefunction(twin)


EXIT_SCRIPT = """
import sys, threading
from pydantic import BaseModel
from timecrisis import JobContext, JobScheduler, storage_from_url

class Payload(BaseModel):
    n: int

scheduler = JobScheduler(storage_from_url(sys.argv[1]))

@scheduler.job("double", concurrency=None)
async def double(data: Payload, ctx: JobContext) -> int:
    return data.n * 2

job_id = double.enqueue_sync({"n": 1})
assert scheduler.get_job_sync(job_id) is not None
print(sorted(t.name.split("-")[0] + "-" + t.name.split("-")[1] for t in threading.enumerate()
             if t.name.startswith("timecrisis-sync")))
# No close: the interpreter must still exit at once, cleanly.
"""


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_an_unclosed_producer_exits_cleanly(kind: str, tmp_path: Path) -> None:
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'exit.db'}"
    else:
        schema = fresh_schema()
        url = f"{require_postgres()}?schema={schema}"
    try:
        done = subprocess.run(
            [sys.executable, "-c", EXIT_SCRIPT, url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        if kind == "postgres":
            drop_schema(require_postgres(), schema)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['timecrisis-sync']"  # it ran on the private loop
    assert done.stderr == ""
